// Package network gives sandboxes outbound IPv4 connectivity from the host
// side: a bridge per sbx instance, a veth pair per sandbox, an address from
// the instance's subnet, DNS, and an nftables table that masquerades what
// leaves the subnet and enforces the policy (see nft.go for the rules).
//
// Layout for an instance named N (the OCI backend's data-dir hash):
//
//	bridge sbx-N            gateway .1 of the subnet, port isolation on
//	                        every sandbox port (no sandbox-to-sandbox
//	                        traffic even at layer 2), IPv6 off
//	veth sbv<addr in hex>   host end of a sandbox's pair, on the bridge;
//	                        the other end is eth0 in the sandbox
//	table inet sbx-N        input, forward and NAT rules
//	net.ipv4.ip_forward     on while any instance has a bridge (forward.go)
//
// The per-sandbox work at start is a handful of netlink requests, done in
// the sandbox's network namespace from a thread that joins it, and, only
// for sandboxes with allow or deny lists, one nft transaction. Everything
// needed to undo it after a crash of sbxd is in StateDir (state.go).
// Release hands the slow kernel work (veth deletion, conntrack flush) to a
// background janitor and keeps the sandbox's address leased until it is
// done, so that a new sandbox never meets an old one's leftovers.
//
// DNS: sandboxes use the host's nameservers, read from /etc/resolv.conf, or,
// when it lists only loopback resolvers (systemd-resolved's 127.0.0.53,
// which a sandbox cannot reach), from systemd-resolved's list of upstream
// servers. TCP and UDP port 53 to those addresses is allowed whatever the
// policy, even when they are private or a host address. A host whose only
// resolver listens on loopback must pass Config.Nameservers; sandboxes
// have no DNS otherwise (Open logs a warning).
//
// Host firewalls: the table only adds refusals; another one that drops
// forwarded traffic (Docker sets iptables' FORWARD policy to DROP) must let
// the bridge's traffic through, or sandboxes have no egress. Connections
// that host processes open to sandbox addresses are not filtered; sbx
// itself reaches sandboxes only through their agents' sockets.
package network

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

// Config configures a Host.
type Config struct {
	// Name tells this sbx instance from others on the host: 1-11
	// lower-case letters and digits. It names the bridge and the nftables
	// table.
	Name string
	// StateDir keeps the addresses and policies of attached sandboxes
	// across restarts of sbxd.
	StateDir string
	// Subnet is the IPv4 prefix sandboxes take addresses from, /16 to
	// /29. The zero value picks a free /22 of DefaultPool.
	Subnet netip.Prefix
	// Nameservers are the IPv4 DNS servers of sandboxes; nil means the
	// host's (see the package comment), empty means none.
	Nameservers []netip.Addr
	// Logger receives diagnostics; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultPool is where subnets are picked from when Config.Subnet is not
// set, as the first /22 that no route of the host overlaps.
var DefaultPool = netip.MustParsePrefix("10.213.0.0/16")

const defaultBits = 22

// Host is the host side of sandbox networking for one sbx instance. It is
// safe for concurrent use on different sandbox ids; callers serialise
// operations on one id.
type Host struct {
	log      *slog.Logger
	name     string
	bridge   string
	stateDir string
	nftPath  string
	hostNS   *os.File
	nl       *netlink.Handle // in hostNS
	subnet   netip.Prefix
	gateway  netip.Addr
	mtu      int
	brIndex  int
	dns      resolvConf
	resolver *net.Resolver

	janitor janitor

	nftMu sync.Mutex
	mu    sync.Mutex
	next  int // index of the next address to try
}

func bridgeName(name string) string { return "sbx-" + name }

// hostVeth names the host end of the veth of the sandbox at addr; the
// address is leased to one sandbox, so the name is unique on the host.
func hostVeth(addr netip.Addr) string {
	b := addr.As4()
	return fmt.Sprintf("sbv%02x%02x%02x%02x", b[0], b[1], b[2], b[3])
}

// Open sets up, or takes over after a restart, the host side of an
// instance: bridge, IP forwarding, firewall table (rebuilt with the
// policies of the sandboxes attached earlier). Each step is idempotent.
func Open(cfg Config) (_ *Host, err error) {
	if !validName(cfg.Name) {
		return nil, fmt.Errorf("%w: network name %q must be 1-11 lower-case letters and digits", errdefs.ErrInvalidArgument, cfg.Name)
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("%w: network StateDir is empty", errdefs.ErrInvalidArgument)
	}
	if cfg.Subnet.IsValid() {
		if !cfg.Subnet.Addr().Is4() || cfg.Subnet.Bits() < 16 || cfg.Subnet.Bits() > 29 {
			return nil, fmt.Errorf("%w: sandbox subnet %s must be an IPv4 prefix of /16 to /29", errdefs.ErrInvalidArgument, cfg.Subnet)
		}
		cfg.Subnet = cfg.Subnet.Masked()
	}
	for _, a := range cfg.Nameservers {
		if !a.Is4() || a.IsLoopback() || a.IsUnspecified() {
			return nil, fmt.Errorf("%w: nameserver %s: sandboxes need an IPv4 address they can reach, not loopback or unspecified", errdefs.ErrInvalidArgument, a)
		}
	}
	nftPath, err := exec.LookPath("nft")
	if err != nil {
		return nil, fmt.Errorf("sandbox networking needs the nft command: %w; install nftables (or disable sandbox networking)", err)
	}
	h := &Host{
		log:      cfg.Logger,
		name:     cfg.Name,
		bridge:   bridgeName(cfg.Name),
		stateDir: cfg.StateDir,
		nftPath:  nftPath,
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if cfg.Nameservers != nil {
		h.dns.nameservers = cfg.Nameservers
	} else if h.dns, err = hostDNS(); err != nil {
		return nil, fmt.Errorf("reading the host's DNS configuration: %w", err)
	}
	if len(h.dns.nameservers) == 0 {
		h.log.Warn("no nameserver sandboxes can reach: the host's resolv.conf lists none that is not loopback; sandboxes will have no DNS until nameservers are configured")
	}
	h.resolver = newResolver(h.dns.nameservers)

	for _, d := range []string{h.leaseDir(), h.recordDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if h.hostNS, err = currentNetns(); err != nil {
		return nil, err
	}
	if h.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER); err != nil {
		h.hostNS.Close()
		return nil, err
	}
	defer func() {
		if err != nil {
			h.nl.Close()
			h.hostNS.Close()
		}
	}()
	recs, rerr := h.records()
	if rerr != nil {
		h.log.Warn("unusable network records are left for cleanup", "err", rerr)
	}
	if err := h.setupHost(cfg.Subnet, recs); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && len(recs) == 0 {
			if terr := h.teardown(); terr != nil {
				h.log.Error("undoing network setup", "err", terr)
			}
		}
	}()
	// Records from another subnet (the bridge was recreated under a new
	// one) are dead sandboxes; Release removes them.
	live := recs[:0]
	for _, r := range recs {
		if h.subnet.Contains(r.Addr) {
			live = append(live, r)
		}
	}
	if err := h.nft(context.Background(), h.ruleset(live)); err != nil {
		return nil, fmt.Errorf("installing firewall rules: %w", err)
	}
	if err := h.sweepLeases(); err != nil {
		return nil, err
	}
	h.janitor.start(h.clean)
	sum := sha256.Sum256([]byte(h.name))
	_, n := h.hostRange()
	h.next = int(sum[0]) % n
	return h, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 11 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// Subnet is the prefix sandboxes get addresses from.
func (h *Host) Subnet() netip.Prefix { return h.subnet }

// Gateway is the bridge's address, the sandboxes' default route.
func (h *Host) Gateway() netip.Addr { return h.gateway }

// ResolvConf is the /etc/resolv.conf of sandboxes.
func (h *Host) ResolvConf() []byte { return h.dns.render() }

// HostsNone is the /etc/hosts of sandbox id when it has no network: its
// name is on 127.0.1.1.
func HostsNone(id string) []byte { return hostsFile(id, netip.Addr{}) }

// Attachment is a sandbox's place on the network, from Prepare on.
type Attachment struct {
	id  string
	rec record
}

// Addr is the sandbox's address.
func (a *Attachment) Addr() netip.Addr { return a.rec.Addr }

// Hosts is the /etc/hosts of the sandbox: localhost, and its id on its
// address.
func (a *Attachment) Hosts() []byte { return hostsFile(a.id, a.rec.Addr) }

// Prepare resolves the policy of sandbox id and leases it an address. Its
// record is on disk before Prepare returns, so that Release undoes it
// whatever happens next.
func (h *Host) Prepare(ctx context.Context, id string, p Policy) (*Attachment, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: sandbox id %q cannot name a network record", errdefs.ErrInvalidArgument, id)
	}
	if _, err := os.Stat(h.recordPath(id)); err == nil {
		return nil, fmt.Errorf("%w: sandbox %q already has a network; release it first", errdefs.ErrConflict, id)
	}
	c, err := h.compile(ctx, p)
	if err != nil {
		return nil, err
	}
	addr, err := h.lease(id)
	if err != nil {
		return nil, err
	}
	rec := record{ID: id, Addr: addr, Allow: c.allow, Deny: c.deny}
	if err := h.writeRecord(rec); err != nil {
		_ = h.unlease(addr, id)
		return nil, err
	}
	return &Attachment{id: id, rec: rec}, nil
}

func validID(id string) bool {
	if id == "" || len(id) > 128 || id == "." || id == ".." {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Connect plugs the sandbox into the bridge: a veth pair whose eth0 end is
// created in the sandbox's network namespace and configured there, and
// the sandbox's firewall chain if its policy has lists. netns is a file
// descriptor of that namespace or a pidfd of a process in it. On failure
// the caller calls Release.
func (h *Host) Connect(ctx context.Context, a *Attachment, netns int) error {
	veth := hostVeth(a.rec.Addr)
	err := inNetns(netns, int(h.hostNS.Fd()), func() error {
		// Sandboxes have no IPv6; an eth0 created after this has none
		// either (loopback keeps ::1). Unprivileged ICMP echo sockets
		// let ping work without CAP_NET_RAW. /proc/sys is read-only
		// inside; these are set from here.
		if err := writeSysctl("net/ipv6/conf/default/disable_ipv6", "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := writeSysctl("net/ipv4/ping_group_range", "0 2147483647"); err != nil {
			return err
		}
		// One socket, in this namespace, for every request below.
		nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer nl.Close()
		// Loopback is index 1 in every namespace; runtimes usually
		// bring it up, but not all do.
		if err := nl.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}); err != nil {
			return fmt.Errorf("loopback up: %w", err)
		}
		eth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: "eth0", MTU: h.mtu, TxQLen: -1},
			PeerName:      veth,
			PeerNamespace: netlink.NsFd(h.hostNS.Fd()),
		}
		if err := nl.LinkAdd(eth); err != nil {
			return fmt.Errorf("create veth pair %s: %w", veth, err)
		}
		// A /32 and a route to the gateway only: nothing is on-link but
		// the gateway, so a packet to another sandbox goes through the
		// host's firewall and is refused at once, instead of waiting
		// for an ARP answer that port isolation never lets through.
		if err := nl.AddrAdd(eth, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(a.rec.Addr, 32))}); err != nil {
			return fmt.Errorf("address eth0: %w", err)
		}
		if err := nl.LinkSetUp(eth); err != nil {
			return fmt.Errorf("eth0 up: %w", err)
		}
		if err := nl.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: prefixNet(netip.PrefixFrom(h.gateway, 32)), Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("route to the gateway: %w", err)
		}
		if err := nl.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(h.gateway.AsSlice())}); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
		peer, err := h.nl.LinkByName(veth)
		if err != nil {
			return fmt.Errorf("host end %s: %w", veth, err)
		}
		// No IPv6 link-local address on a bridge port: it would only chatter.
		if err := h.nl.LinkSetIP6AddrGenMode(peer, 1 /* IN6_ADDR_GEN_MODE_NONE */); err != nil {
			return fmt.Errorf("%s addrgenmode: %w", veth, err)
		}
		if err := h.nl.LinkSetMasterByIndex(peer, h.brIndex); err != nil {
			return fmt.Errorf("attach %s to %s: %w", veth, h.bridge, err)
		}
		if err := h.nl.LinkSetIsolated(peer, true); err != nil {
			return fmt.Errorf("isolate bridge port %s: %w", veth, err)
		}
		if err := h.nl.LinkSetUp(peer); err != nil {
			return fmt.Errorf("%s up: %w", veth, err)
		}
		return waitLinkUp(ctx, nl, eth.Attrs().Index, veth)
	})
	if err != nil {
		return err
	}
	if a.rec.custom() {
		if err := h.addPolicy(ctx, a.rec); err != nil {
			return fmt.Errorf("installing the network policy: %w", err)
		}
	}
	return nil
}

// Release removes sandbox id's network: its record at once, and its veth,
// firewall chain and connection tracking entries soon after, in the
// background, because the kernel takes tens of milliseconds over each
// (deleting a veth waits for RCU grace periods, finding a sandbox's
// conntrack entries walks the whole table). The sandbox's address stays
// leased until that is done, so no new sandbox meets its leftovers. A
// crash before then leaves a lease without a record, which the next Open
// cleans up. Wait waits for the background work. Release is idempotent.
func (h *Host) Release(ctx context.Context, id string) error {
	if !validID(id) {
		return nil
	}
	rec, err := h.readRecord(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		// Unusable: nothing to undo but the record; its lease, if any,
		// is swept by the next Open.
		h.log.Warn("removing unusable network record", "id", id, "err", err)
		return os.Remove(h.recordPath(id))
	}
	if err := os.Remove(h.recordPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	h.janitor.add(rec)
	return nil
}

// Wait blocks until the background work of every Release so far is done.
func (h *Host) Wait() { h.janitor.wait() }

// clean removes what is left of the sandboxes of recs, whose records are
// gone: veths, firewall chains, connection tracking entries, and then
// their leases. A lease whose leftovers could not be removed stays, so
// that its address is not handed out again before the next Open.
func (h *Host) clean(recs []record) {
	ok := make([]bool, len(recs))
	var flush []*netlink.ConntrackFilter
	for i, r := range recs {
		ok[i] = true
		if l, err := h.nl.LinkByName(hostVeth(r.Addr)); err == nil {
			if err := h.nl.LinkDel(l); err != nil && !isNotFound(err) {
				h.log.Error("deleting the veth of a released sandbox", "id", r.ID, "veth", l.Attrs().Name, "err", err)
				ok[i] = false
			}
		} else if !isNotFound(err) {
			h.log.Error("looking up the veth of a released sandbox", "id", r.ID, "err", err)
			ok[i] = false
		}
		if r.custom() {
			if err := h.removePolicy(context.Background(), r.Addr); err != nil {
				h.log.Error("removing the firewall chain of a released sandbox", "id", r.ID, "err", err)
				ok[i] = false
			}
		}
		f := &netlink.ConntrackFilter{}
		if err := f.AddIP(netlink.ConntrackOrigSrcIP, net.IP(r.Addr.AsSlice())); err == nil {
			flush = append(flush, f)
		}
	}
	if len(flush) > 0 {
		filters := make([]netlink.CustomConntrackFilter, len(flush))
		for i, f := range flush {
			filters[i] = f
		}
		if _, err := h.nl.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.FAMILY_V4, filters...); err != nil {
			// Without nf_conntrack_netlink there is nothing to flush
			// that the kernel would let us see anyway.
			h.log.Debug("flushing connection tracking entries", "err", err)
		}
	}
	for i, r := range recs {
		if !ok[i] {
			continue
		}
		if err := h.unlease(r.Addr, r.ID); err != nil {
			h.log.Error("releasing an address", "addr", r.Addr, "err", err)
		}
	}
}

// IDs returns the sandboxes that have network resources, so that a
// restarted sbxd can release those of dead sandboxes.
func (h *Host) IDs() ([]string, error) { return h.recordIDs() }

// Close releases what h holds. If no sandbox is attached any more it also
// removes the host-wide state (table, bridge, IP forwarding claim, state
// directory), leaving the host as it found it; otherwise that stays for
// the sandboxes, which outlive sbxd. It must not be called concurrently
// with other methods.
func (h *Host) Close() error {
	h.janitor.stop()
	defer h.hostNS.Close()
	defer h.nl.Close()
	ids, err := h.recordIDs()
	if err != nil {
		return err
	}
	if len(ids) > 0 {
		h.log.Debug("sandboxes still attached; host network state stays", "sandboxes", len(ids))
		return nil
	}
	return h.teardown()
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNoDevice)
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)}
}

// waitLinkUp returns once both ends of a sandbox's veth pair pass
// traffic. The kernel finishes bringing a veth end up asynchronously (its
// queueing discipline, and the bridge port's move to forwarding, follow
// the carrier event a moment later) and drops what is sent before; a TCP
// connect or ARP request that meets that stalls for its one-second
// retransmit, so the sandbox must not start before.
func waitLinkUp(ctx context.Context, nl *netlink.Handle, eth int, peer string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	state := "/sys/class/net/" + peer + "/brport/state"
	for pause := 20 * time.Microsecond; ; pause = min(2*pause, 5*time.Millisecond) {
		link, err := nl.LinkByIndex(eth)
		if err != nil {
			return fmt.Errorf("eth0: %w", err)
		}
		port, err := os.ReadFile(state)
		if err != nil {
			return fmt.Errorf("bridge port %s: %w", peer, err)
		}
		// 3 is BR_STATE_FORWARDING.
		if link.Attrs().OperState == netlink.OperUp && string(bytes.TrimSpace(port)) == "3" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("veth pair %s did not come up (eth0 %s, bridge port state %s): %w",
				peer, link.Attrs().OperState, bytes.TrimSpace(port), ctx.Err())
		case <-time.After(pause):
		}
	}
}
