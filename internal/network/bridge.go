package network

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/internal/errdefs"
)

var errNoDevice = unix.ENODEV

// setupHost creates or adopts the bridge and claims IP forwarding, under
// the host-wide lock so that concurrent instances pick distinct subnets.
// want is the configured subnet (may be zero); recs are the records of
// sandboxes attached earlier, whose subnet is preferred.
func (h *Host) setupHost(want netip.Prefix, recs []record) error {
	release, err := hostLock()
	if err != nil {
		return err
	}
	defer release()

	if h.mtu, err = uplinkMTU(); err != nil {
		return err
	}
	br, err := netlink.LinkByName(h.bridge)
	switch {
	case err == nil:
		if err := h.adoptBridge(br, want, len(recs) == 0); err != nil {
			return err
		}
	case isNotFound(err):
		if err := h.createBridge(want, recs); err != nil {
			return err
		}
	default:
		return fmt.Errorf("look up bridge %s: %w", h.bridge, err)
	}
	return acquireForwarding(h.name)
}

// adoptBridge takes over the bridge left by an earlier sbxd. unused says
// no sandbox is attached to it, so that it may be recreated with another
// subnet.
func (h *Host) adoptBridge(br netlink.Link, want netip.Prefix, unused bool) error {
	if _, ok := br.(*netlink.Bridge); !ok {
		return fmt.Errorf("%s exists but is a %s, not a bridge; remove it", h.bridge, br.Type())
	}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones)
		if want.IsValid() && p.Masked() != want {
			if unused {
				if err := netlink.LinkDel(br); err != nil {
					return err
				}
				return h.createBridge(want, nil)
			}
			return fmt.Errorf("%w: bridge %s has subnet %s but %s is configured; destroy the sandboxes of this data dir and remove the bridge (sbxd cleanup) to change it",
				errdefs.ErrConflict, h.bridge, p.Masked(), want)
		}
		h.subnet, h.gateway = p.Masked(), p.Addr()
		h.brIndex = br.Attrs().Index
		if br.Attrs().Flags&net.FlagUp == 0 {
			return netlink.LinkSetUp(br)
		}
		return nil
	}
	// A bridge without an address is a crash in the middle of
	// createBridge: start over.
	if err := netlink.LinkDel(br); err != nil {
		return err
	}
	return h.createBridge(want, nil)
}

func (h *Host) createBridge(want netip.Prefix, recs []record) error {
	subnet := want
	if !subnet.IsValid() {
		var err error
		if subnet, err = h.pickSubnet(recs); err != nil {
			return err
		}
	} else if r, err := overlappingRoute(subnet); err != nil {
		return err
	} else if r.IsValid() {
		return fmt.Errorf("%w: sandbox subnet %s overlaps the host's route to %s; configure another", errdefs.ErrConflict, subnet, r)
	}
	// A fixed MAC: a bridge otherwise takes the lowest MAC of its ports
	// and changes it as sandboxes come and go, invalidating the gateway
	// in every sandbox's ARP cache.
	sum := sha256.Sum256([]byte("sbx bridge " + h.name))
	mac := net.HardwareAddr{0x02, sum[0], sum[1], sum[2], sum[3], sum[4]}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: h.bridge, MTU: h.mtu, HardwareAddr: mac, TxQLen: -1}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", h.bridge, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = netlink.LinkDel(br)
		}
	}()
	if err := writeSysctl("net/ipv6/conf/"+h.bridge+"/disable_ipv6", "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	gw := offset(subnet.Addr(), 1)
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(gw, subnet.Bits()))}); err != nil {
		return fmt.Errorf("address bridge %s: %w", h.bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return err
	}
	h.subnet, h.gateway, h.brIndex = subnet, gw, br.Attrs().Index
	ok = true
	h.log.Info("created sandbox bridge", "bridge", h.bridge, "subnet", subnet, "mtu", h.mtu)
	return nil
}

// pickSubnet returns the first /22 of DefaultPool that no host route
// overlaps, starting at one derived from the instance name (so an instance
// tends to get the same subnet each time) or at the subnet of recs.
func (h *Host) pickSubnet(recs []record) (netip.Prefix, error) {
	n := 1 << (defaultBits - DefaultPool.Bits())
	sum := sha256.Sum256([]byte(h.name))
	start := int(sum[0])<<8 | int(sum[1])
	if len(recs) > 0 {
		if a := recs[0].Addr; DefaultPool.Contains(a) {
			start = int((u32(a) - u32(DefaultPool.Addr())) >> (32 - defaultBits))
		}
	}
	for i := range n {
		k := (start + i) % n
		p := netip.PrefixFrom(offset(DefaultPool.Addr(), k<<(32-defaultBits)), defaultBits)
		r, err := overlappingRoute(p)
		if err != nil {
			return netip.Prefix{}, err
		}
		if !r.IsValid() {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w: every /%d of %s overlaps a route of this host; configure a sandbox subnet", errdefs.ErrCapacity, defaultBits, DefaultPool)
}

// overlappingRoute returns a route of the host, in any table, that
// overlaps p; default routes do not count.
func overlappingRoute(p netip.Prefix) (netip.Prefix, error) {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		q := netip.PrefixFrom(ip.Unmap(), ones)
		if q.Bits() > 0 && q.Overlaps(p) {
			return q, nil
		}
	}
	return netip.Prefix{}, nil
}

// uplinkMTU is the smallest MTU of the interfaces the default routes use
// (1500 without one): a sandbox whose packets are bigger than the uplink
// takes loses large transfers on paths that drop ICMP.
func uplinkMTU() (int, error) {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: nil}, netlink.RT_FILTER_DST)
	if err != nil {
		return 0, fmt.Errorf("list routes: %w", err)
	}
	mtu := 0
	for _, r := range routes {
		if r.Dst != nil && !r.Dst.IP.IsUnspecified() {
			continue
		}
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU > 0 && (mtu == 0 || l.Attrs().MTU < mtu) {
			mtu = l.Attrs().MTU
		}
	}
	if mtu == 0 {
		mtu = 1500
	}
	return mtu, nil
}

// teardown removes the instance's table and bridge, gives up its claim on
// IP forwarding and removes the state directory.
func (h *Host) teardown() error {
	var errs []error
	if err := h.deleteTable(context.Background()); err != nil {
		errs = append(errs, fmt.Errorf("removing firewall table: %w", err))
	}
	release, err := hostLock()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer release()
	if br, err := netlink.LinkByName(h.bridge); err == nil {
		if err := netlink.LinkDel(br); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", h.bridge, err))
		}
	} else if !isNotFound(err) {
		errs = append(errs, err)
	}
	if err := releaseForwarding(h.name); err != nil {
		errs = append(errs, fmt.Errorf("restoring IP forwarding: %w", err))
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(h.stateDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
