package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Network modes.
const (
	// NetworkInternet gives the sandbox outbound IPv4 connections to
	// public addresses, with DNS. It is the default.
	NetworkInternet = "internet"
	// NetworkNone gives the sandbox a loopback interface only.
	NetworkNone = "none"
)

// MaxNetworkRules is the most entries Network.Allow and Network.Deny may
// each hold.
const MaxNetworkRules = 256

// Network is the network policy of a sandbox, fixed when it is created
// (the network field of PUT /v1/sandboxes/{id}).
//
// In JSON it is either a string, "internet" (the default) or "none", or an
// object:
//
//	{"mode": "internet", "allow": ["203.0.113.0/24", "pypi.org"], "deny": ["198.51.100.7"]}
//
// Whatever the policy says, a sandbox never reaches the host it runs on
// (any of its addresses, the API port included), other sandboxes, or the
// ranges of BlockedNetworks: private, shared (CGNAT), link-local (cloud
// metadata), loopback, multicast and reserved addresses. Sandboxes have
// IPv4 only. Refused connections fail at once (connection refused or
// host unreachable), they do not hang. DNS to the resolvers sbxd
// configures is always allowed, so that host names resolve under an
// allow-list too.
type Network struct {
	// Mode is "internet" (default) or "none".
	Mode string `json:"mode,omitempty"`
	// Allow, when not empty, limits outbound connections to these
	// destinations: IPv4 addresses ("203.0.113.7"), CIDR prefixes
	// ("203.0.113.0/24") or host names ("pypi.org"), which are resolved
	// to their IPv4 addresses each time the sandbox starts.
	Allow []string `json:"allow,omitempty"`
	// Deny refuses these destinations, in the same forms. It takes
	// precedence over Allow.
	Deny []string `json:"deny,omitempty"`
}

// UnmarshalJSON accepts the string form ("internet", "none") and the
// object form; unknown object fields are refused, so a misspelt "alow"
// does not silently open the network.
func (n *Network) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*n = Network{Mode: s}
		return nil
	}
	type plain Network // without this method
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf(`network must be "internet", "none" or an object like {"mode": "internet", "allow": ["203.0.113.0/24", "pypi.org"], "deny": []}: %v`, err)
	}
	*n = Network(p)
	return nil
}

// IsNone reports whether n gives the sandbox no network. A nil n is the
// default, internet.
func (n *Network) IsNone() bool { return n != nil && n.Mode == NetworkNone }

// Validate checks n before anything runs and says what to fix. Host names
// are checked for syntax only; they are resolved when the sandbox starts.
func (n *Network) Validate() error {
	if n == nil {
		return nil
	}
	switch n.Mode {
	case "", NetworkInternet:
	case NetworkNone:
		if len(n.Allow)+len(n.Deny) > 0 {
			return errors.New(`network mode "none" takes no allow or deny list; use mode "internet" with an allow list to permit only some destinations`)
		}
	default:
		return fmt.Errorf(`network mode %q is not known; use "internet" or "none"`, n.Mode)
	}
	for _, list := range []struct {
		name    string
		entries []string
	}{{"allow", n.Allow}, {"deny", n.Deny}} {
		if len(list.entries) > MaxNetworkRules {
			return fmt.Errorf("network %s list has %d entries; at most %d are allowed (use CIDR prefixes to cover ranges)", list.name, len(list.entries), MaxNetworkRules)
		}
		for _, e := range list.entries {
			d, err := ParseDestination(e)
			if err != nil {
				return fmt.Errorf("network %s entry: %w", list.name, err)
			}
			if list.name == "allow" && d.Host == "" {
				if b, ok := blockedContaining(d.Prefix); ok {
					return fmt.Errorf("network allow entry %q lies in %s (%s), which sandboxes can never reach", e, b.Prefix, b.Name)
				}
			}
		}
	}
	return nil
}

// Normalized returns n with defaults filled in (nil becomes mode
// "internet"), addresses as /32 prefixes, prefixes masked, host names in
// lower case without a trailing dot and duplicates dropped, keeping order.
// n must be valid.
func (n *Network) Normalized() *Network {
	out := &Network{Mode: NetworkInternet}
	if n == nil {
		return out
	}
	if n.Mode != "" {
		out.Mode = n.Mode
	}
	norm := func(in []string) []string {
		var res []string
		for _, e := range in {
			s := e
			if d, err := ParseDestination(e); err == nil {
				s = d.String()
			}
			if !slices.Contains(res, s) {
				res = append(res, s)
			}
		}
		return res
	}
	out.Allow, out.Deny = norm(n.Allow), norm(n.Deny)
	return out
}

// Equal reports whether n and o are the same policy once normalized; nil is
// the default policy.
func (n *Network) Equal(o *Network) bool {
	a, b := n.Normalized(), o.Normalized()
	return a.Mode == b.Mode && slices.Equal(a.Allow, b.Allow) && slices.Equal(a.Deny, b.Deny)
}

// Destination is one parsed entry of an allow or deny list: a prefix, or a
// host name to resolve.
type Destination struct {
	Prefix netip.Prefix // valid when Host is empty
	Host   string       // lower case, no trailing dot
}

func (d Destination) String() string {
	if d.Host != "" {
		return d.Host
	}
	return d.Prefix.String()
}

// ParseDestination parses an allow or deny entry: an IPv4 address, an
// IPv4 CIDR prefix (its host bits are cleared) or a host name.
func ParseDestination(s string) (Destination, error) {
	if s == "" {
		return Destination{}, errors.New("empty entry; use an IPv4 address, a CIDR prefix such as 203.0.113.0/24 or a host name")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Destination{}, fmt.Errorf("%q is not a valid CIDR prefix (like 203.0.113.0/24): %v", s, err)
		}
		if !p.Addr().Is4() {
			return Destination{}, fmt.Errorf("%q is an IPv6 prefix; sandboxes have IPv4 only, so IPv6 destinations are always unreachable", s)
		}
		return Destination{Prefix: p.Masked()}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Is4In6() {
			a = a.Unmap()
		}
		if !a.Is4() {
			return Destination{}, fmt.Errorf("%q is an IPv6 address; sandboxes have IPv4 only, so IPv6 destinations are always unreachable", s)
		}
		return Destination{Prefix: netip.PrefixFrom(a, 32)}, nil
	}
	host := strings.ToLower(strings.TrimSuffix(s, "."))
	if err := validHostname(host); err != nil {
		return Destination{}, fmt.Errorf("%q is not an IPv4 address, CIDR prefix or host name: %v", s, err)
	}
	return Destination{Host: host}, nil
}

// validHostname checks host name syntax (RFC 1123 labels). A name whose
// last label is numeric is refused: it is a mistyped address.
func validHostname(h string) error {
	if h == "" || len(h) > 253 {
		return errors.New("a host name has 1 to 253 characters")
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return errors.New("each dot-separated label has 1 to 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("labels must not start or end with '-'")
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("character %q is not allowed (letters, digits, '-' and '.')", c)
			}
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return errors.New("it looks like an IP address but is not a valid one")
	}
	return nil
}

// BlockedNetwork is an IPv4 range no sandbox may reach.
type BlockedNetwork struct {
	Prefix netip.Prefix
	Name   string
}

var blockedNetworks = []BlockedNetwork{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private, RFC 1918"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT), RFC 6598"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local, where cloud metadata services live"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private, RFC 1918"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private, RFC 1918"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved and broadcast"},
}

// BlockedNetworks returns the IPv4 ranges no sandbox reaches, whatever its
// policy. IPv6 is unreachable altogether (sandboxes have no IPv6
// address), which covers ::1, fc00::/7 and fe80::/10.
func BlockedNetworks() []BlockedNetwork { return slices.Clone(blockedNetworks) }

// blockedContaining returns the blocked range that wholly contains p.
func blockedContaining(p netip.Prefix) (BlockedNetwork, bool) {
	for _, b := range blockedNetworks {
		if b.Prefix.Bits() <= p.Bits() && b.Prefix.Contains(p.Addr()) {
			return b, true
		}
	}
	return BlockedNetwork{}, false
}
