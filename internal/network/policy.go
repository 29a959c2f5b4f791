package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// Policy is what one sandbox may reach beyond the rules every sandbox
// obeys (no host, no other sandbox, no api.BlockedNetworks).
type Policy struct {
	// Allow, when not empty, limits outbound connections to these
	// destinations; Deny refuses destinations and wins over Allow.
	// Entries are what api.ParseDestination accepts.
	Allow, Deny []string
}

// resolveTimeout bounds the resolution of a policy's host names.
const resolveTimeout = 5 * time.Second

// compiled is a Policy with its host names resolved.
type compiled struct {
	allow, deny []netip.Prefix
}

func (c compiled) custom() bool { return len(c.allow)+len(c.deny) > 0 }

// compile parses p and resolves its host names to IPv4 addresses. A name
// that does not resolve is an error: an allow-list would silently shrink,
// a deny-list silently open.
func (h *Host) compile(ctx context.Context, p Policy) (compiled, error) {
	var c compiled
	if len(p.Allow)+len(p.Deny) == 0 {
		return c, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	conv := func(list string, entries []string) ([]netip.Prefix, error) {
		var out []netip.Prefix
		for _, e := range entries {
			d, err := api.ParseDestination(e)
			if err != nil {
				return nil, fmt.Errorf("%w: network %s entry: %w", errdefs.ErrInvalidArgument, list, err)
			}
			if d.Host == "" {
				out = append(out, d.Prefix)
				continue
			}
			// The trailing dot keeps the host's search domains out.
			addrs, err := h.resolver.LookupNetIP(ctx, "ip4", d.Host+".")
			if err != nil {
				return nil, fmt.Errorf("%w: network %s entry %q: resolving it failed: %s", errdefs.ErrInvalidArgument, list, e, h.describe(err))
			}
			if len(addrs) == 0 {
				return nil, fmt.Errorf("%w: network %s entry %q has no IPv4 address", errdefs.ErrInvalidArgument, list, e)
			}
			for _, a := range addrs {
				out = append(out, netip.PrefixFrom(a.Unmap(), 32))
			}
		}
		return merge(out), nil
	}
	var err error
	if c.allow, err = conv("allow", p.Allow); err != nil {
		return c, err
	}
	if c.deny, err = conv("deny", p.Deny); err != nil {
		return c, err
	}
	return c, nil
}

// describe says why a lookup failed, naming the nameservers asked (a
// net.DNSError names the system's, which a custom Dial replaces).
func (h *Host) describe(err error) string {
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		return err.Error()
	}
	msg := dnsErr.Err
	if dnsErr.IsNotFound {
		msg = "no such host"
	}
	if len(h.dns.nameservers) == 0 {
		return msg
	}
	ns := make([]string, len(h.dns.nameservers))
	for i, a := range h.dns.nameservers {
		ns[i] = a.String()
	}
	return msg + " (nameservers " + strings.Join(ns, ", ") + ")"
}

// merge sorts prefixes and drops those inside another (nftables refuses
// overlapping elements in an interval set). CIDR prefixes either nest or
// are disjoint, and a prefix sorts before every prefix inside it.
func merge(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	var out []netip.Prefix
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}
