package network

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/sbx-dev/sbx/api"
)

// The firewall of one sbx instance is the nftables table "inet sbx-<name>",
// replaced as a whole (atomically) when the instance opens and changed by
// small batches when a sandbox with a policy of its own comes or goes.
// Its base chains accept what they do not handle, so traffic that neither
// comes from nor goes to the instance's bridge is untouched.
//
//   - input: packets from sandboxes to any host address are refused, but
//     for DNS to a nameserver that is a host address.
//   - forward, from sandboxes: IPv4 only; source addresses of the subnet
//     only; never into any sbx bridge (other sandboxes, of this instance
//     or another); DNS to the nameservers; then the sandbox's own chain,
//     if it has one (map "policies", keyed by its address); then the
//     blocked ranges; then accepted. Decisions are taken on a
//     connection's first packet; replies and the rest of the connection
//     pass on its conntrack state.
//   - forward, to sandboxes: replies only.
//   - postrouting: masquerade what leaves the subnet.
//
// Refusals are rejects (TCP reset, ICMP administratively prohibited), so
// that a refused connection fails at once instead of timing out.

const nftTimeout = 10 * time.Second

func (h *Host) table() string { return "sbx-" + h.name }

// chainName names the chain of the sandbox at addr.
func chainName(addr netip.Addr) string {
	b := addr.As4()
	return fmt.Sprintf("sb-%02x%02x%02x%02x", b[0], b[1], b[2], b[3])
}

func setElems(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		if p.Bits() == 32 {
			s[i] = p.Addr().String()
		} else {
			s[i] = p.String()
		}
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

// ruleset renders the whole table with the chains of recs.
func (h *Host) ruleset(recs []record) []byte {
	var b bytes.Buffer
	t := h.table()
	br := h.bridge
	// Adding first makes the delete succeed when the table is absent; the
	// batch is one transaction, so the table is never seen half-built.
	fmt.Fprintf(&b, "add table inet %s\ndelete table inet %s\n", t, t)
	fmt.Fprintf(&b, "table inet %s {\n", t)

	b.WriteString("\tset dns {\n\t\ttype ipv4_addr\n")
	if len(h.dns.nameservers) > 0 {
		ps := make([]netip.Prefix, len(h.dns.nameservers))
		for i, a := range h.dns.nameservers {
			ps[i] = netip.PrefixFrom(a, 32)
		}
		fmt.Fprintf(&b, "\t\telements = %s\n", setElems(ps))
	}
	b.WriteString("\t}\n")

	var blocked []netip.Prefix
	for _, n := range api.BlockedNetworks() {
		blocked = append(blocked, n.Prefix)
	}
	fmt.Fprintf(&b, "\tset blocked {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = %s\n\t}\n", setElems(merge(blocked)))

	b.WriteString("\tmap policies {\n\t\ttype ipv4_addr : verdict\n")
	var elems []string
	for _, r := range recs {
		if r.custom() {
			elems = append(elems, fmt.Sprintf("%s : jump %s", r.Addr, chainName(r.Addr)))
		}
	}
	if len(elems) > 0 {
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
	}
	b.WriteString("\t}\n")

	fmt.Fprintf(&b, `	chain input {
		type filter hook input priority filter; policy accept;
		iifname %[1]q jump to_host
	}
	chain to_host {
		ip daddr @dns meta l4proto { tcp, udp } th dport 53 accept
		jump refuse
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname %[1]q jump egress
		oifname %[1]q ct state established,related accept
		oifname %[1]q jump refuse
	}
	chain egress {
		ct state established,related accept
		meta nfproto != ipv4 jump refuse
		ip saddr != %[2]s drop
		oifname "sbx-*" jump refuse
		ip daddr @dns meta l4proto { tcp, udp } th dport 53 accept
		ip saddr vmap @policies
		ip daddr @blocked jump refuse
		accept
	}
	chain refuse {
		meta l4proto tcp reject with tcp reset
		reject with icmpx type admin-prohibited
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[2]s ip daddr != %[2]s masquerade
	}
`, br, h.subnet)
	for _, r := range recs {
		if r.custom() {
			fmt.Fprintf(&b, "\tchain %s {\n", chainName(r.Addr))
			for _, rule := range policyRules(r) {
				fmt.Fprintf(&b, "\t\t%s\n", rule)
			}
			b.WriteString("\t}\n")
		}
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// policyRules are the rules of a sandbox's own chain. Falling off its end
// returns to the common rules.
func policyRules(r record) []string {
	var rules []string
	if len(r.Deny) > 0 {
		rules = append(rules, "ip daddr "+setElems(r.Deny)+" jump refuse")
	}
	if len(r.Allow) > 0 {
		rules = append(rules, "ip daddr != "+setElems(r.Allow)+" jump refuse")
	}
	return rules
}

// addPolicy installs the chain of r and its entry in the policy map.
func (h *Host) addPolicy(ctx context.Context, r record) error {
	t, c := h.table(), chainName(r.Addr)
	var b bytes.Buffer
	fmt.Fprintf(&b, "add chain inet %s %s\nflush chain inet %s %s\n", t, c, t, c)
	for _, rule := range policyRules(r) {
		fmt.Fprintf(&b, "add rule inet %s %s %s\n", t, c, rule)
	}
	fmt.Fprintf(&b, "add element inet %s policies { %s : jump %s }\n", t, r.Addr, c)
	return h.nft(ctx, b.Bytes())
}

// removePolicy removes the chain of the sandbox at addr and its map entry,
// whether or not they exist.
func (h *Host) removePolicy(ctx context.Context, addr netip.Addr) error {
	t, c := h.table(), chainName(addr)
	// Adding first makes each delete succeed when the thing is absent.
	script := fmt.Appendf(nil, `add chain inet %[1]s %[2]s
add element inet %[1]s policies { %[3]s : jump %[2]s }
delete element inet %[1]s policies { %[3]s }
flush chain inet %[1]s %[2]s
delete chain inet %[1]s %[2]s
`, t, c, addr)
	err := h.nft(ctx, script)
	if err != nil && !h.tableExists(ctx) {
		return nil // no table, nothing of the sandbox's left
	}
	return err
}

func (h *Host) tableExists(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, nftTimeout)
	defer cancel()
	return exec.CommandContext(ctx, h.nftPath, "list", "table", "inet", h.table()).Run() == nil
}

// deleteTable removes the table if it exists.
func (h *Host) deleteTable(ctx context.Context) error {
	t := h.table()
	return h.nft(ctx, fmt.Appendf(nil, "add table inet %s\ndelete table inet %s\n", t, t))
}

// nft runs script as one nftables transaction.
func (h *Host) nft(ctx context.Context, script []byte) error {
	ctx, cancel := context.WithTimeout(ctx, nftTimeout)
	defer cancel()
	h.nftMu.Lock()
	defer h.nftMu.Unlock()
	cmd := exec.CommandContext(ctx, h.nftPath, "-f", "-")
	cmd.Stdin = bytes.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}
