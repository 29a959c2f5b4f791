// Package nettest builds a stand-in for the internet on the local machine,
// for tests of sandbox networking: a host in a network namespace the test
// creates, holding addresses from the ranges sandboxes may and may not
// reach, with an HTTP server on port 80 and a DNS server on port 53 at
// every address. The host machine gets a route to each address through a
// veth pair, so sandboxes reach them along their normal egress path
// (bridge, forwarding, masquerade).
//
// Test safety: traffic goes only to these addresses, which the test owns
// for its duration. "Public" addresses come from the documentation ranges
// 203.0.113.0/24 and 198.51.100.0/24, which are never routed on the
// internet; the link-local one is never 169.254.169.254. Addresses a route
// of the machine already covers (other than a default route) are not
// used. A test that cannot build its internet fails; nothing falls back to
// a real address. Everything is removed when the test ends, whether or
// not it failed: the veth (with its routes) and the namespace, which holds
// no mount and dies with its last file descriptor.
package nettest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
)

// Internet is a test host standing in for the internet and for the places
// sandboxes must not reach.
type Internet struct {
	// HostSide is the machine's address on the link to the test host;
	// masqueraded sandbox traffic arrives from it.
	HostSide netip.Addr
	// Public and Public2 are two "internet" hosts.
	Public, Public2 netip.Addr
	// Blocked are hosts in ranges no sandbox may reach, by description:
	// "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10
	// (CGNAT)", "169.254.0.0/16 (link-local)".
	Blocked map[string]netip.Addr
	// Names are the DNS names the test host answers for (A records).
	Names map[string]netip.Addr

	link    string
	ns      *os.File
	mux     *http.ServeMux
	closers []io.Closer
}

// Names the DNS server answers; they are under .test (RFC 6761), which no
// real resolver serves.
const (
	WebName     = "web.sbx.test"
	Web2Name    = "web2.sbx.test"
	PrivateName = "private.sbx.test"
)

// HTTP paths of the test host. GET / answers "hello from ADDR" with the
// address the request arrived at; GET /bytes?n=N streams N zero bytes.
const HelloPrefix = "hello from "

// New builds an internet for t and removes it when t ends.
func New(t testing.TB) *Internet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("nettest needs root to create network namespaces")
	}
	var lastErr error
	for range 8 {
		in, err := build()
		if err == nil {
			t.Cleanup(in.close)
			return in
		}
		lastErr = err
		if !errors.Is(err, errTaken) {
			break
		}
	}
	t.Fatalf("building the test internet: %v", lastErr)
	return nil
}

var errTaken = errors.New("test addresses in use")

func build() (_ *Internet, err error) {
	var rnd [5]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	k := 1 + int(rnd[0])%126
	in := &Internet{
		HostSide: netip.AddrFrom4([4]byte{198, 51, 100, byte(k)}),
		Public:   netip.AddrFrom4([4]byte{203, 0, 113, byte(k)}),
		Public2:  netip.AddrFrom4([4]byte{198, 51, 100, byte(128 + k)}),
		Blocked: map[string]netip.Addr{
			"10.0.0.0/8":                  netip.AddrFrom4([4]byte{10, 254, byte(k), 10}),
			"172.16.0.0/12":               netip.AddrFrom4([4]byte{172, 29, byte(k), 10}),
			"192.168.0.0/16":              netip.AddrFrom4([4]byte{192, 168, 253, byte(k)}),
			"100.64.0.0/10 (CGNAT)":       netip.AddrFrom4([4]byte{100, 127, byte(k), 10}),
			"169.254.0.0/16 (link-local)": netip.AddrFrom4([4]byte{169, 254, byte(k), 10}),
		},
		link: "sbxt" + hex.EncodeToString(rnd[1:]),
	}
	in.Names = map[string]netip.Addr{
		WebName:     in.Public,
		Web2Name:    in.Public2,
		PrivateName: in.Blocked["10.0.0.0/8"],
	}
	addrs := in.Addrs()
	for _, a := range append(addrs, in.HostSide) {
		if r, err := coveringRoute(a); err != nil {
			return nil, err
		} else if r != "" {
			return nil, fmt.Errorf("%w: %s is already routed (%s)", errTaken, a, r)
		}
	}

	home, err := threadNetns()
	if err != nil {
		return nil, err
	}
	defer home.Close()
	if in.ns, err = newNetns(home); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			in.close()
		}
	}()

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: in.link, TxQLen: -1},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(in.ns.Fd()),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", in.link, err)
	}
	if err := netlink.AddrAdd(veth, &netlink.Addr{IPNet: hostNet(in.HostSide)}); err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return nil, err
	}
	for _, a := range addrs {
		// RouteAdd is exclusive: another test's route to the same
		// address makes it fail, and this one picks others.
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: veth.Attrs().Index, Dst: hostNet(a), Scope: netlink.SCOPE_LINK}); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return nil, fmt.Errorf("%w: route to %s: %v", errTaken, a, err)
			}
			return nil, fmt.Errorf("route to %s: %w", a, err)
		}
	}

	var ln, dnsTCP net.Listener
	var dnsUDP []net.PacketConn
	err = do(in.ns, home, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if err := netlink.AddrAdd(eth, &netlink.Addr{IPNet: hostNet(a)}); err != nil {
				return fmt.Errorf("address %s: %w", a, err)
			}
		}
		if err := netlink.LinkSetUp(eth); err != nil {
			return err
		}
		// The only route out: back to the machine, to which every
		// reply goes (sandbox traffic arrives masqueraded).
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: hostNet(in.HostSide), Scope: netlink.SCOPE_LINK}); err != nil {
			return err
		}
		// Sockets belong to the namespace they are created in, whatever
		// thread serves them later.
		if ln, err = net.Listen("tcp4", "0.0.0.0:80"); err != nil {
			return err
		}
		in.closers = append(in.closers, ln)
		if dnsTCP, err = net.Listen("tcp4", "0.0.0.0:53"); err != nil {
			return err
		}
		in.closers = append(in.closers, dnsTCP)
		// One UDP socket per address: an answer must come from the
		// address the question went to, which a socket bound to
		// 0.0.0.0 does not ensure.
		for _, a := range addrs {
			pc, err := net.ListenPacket("udp4", netip.AddrPortFrom(a, 53).String())
			if err != nil {
				return err
			}
			in.closers = append(in.closers, pc)
			dnsUDP = append(dnsUDP, pc)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("configure the test host: %w", err)
	}
	in.serve(ln, dnsTCP, dnsUDP)
	return in, nil
}

// Addrs returns every address of the test host.
func (in *Internet) Addrs() []netip.Addr {
	out := []netip.Addr{in.Public, in.Public2}
	for _, k := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10 (CGNAT)", "169.254.0.0/16 (link-local)"} {
		out = append(out, in.Blocked[k])
	}
	return out
}

// URL is the test host's HTTP address at a.
func URL(a netip.Addr) string { return "http://" + a.String() + "/" }

// Handle adds an HTTP handler to the test host's server on port 80 (at
// every address), for tests that need more than the built-in pages, such
// as a git smart-HTTP server.
func (in *Internet) Handle(pattern string, h http.Handler) { in.mux.Handle(pattern, h) }

func (in *Internet) serve(ln, dnsTCP net.Listener, dnsUDP []net.PacketConn) {
	mux := http.NewServeMux()
	in.mux = mux
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		host, _, _ := net.SplitHostPort(local.String())
		fmt.Fprintf(w, "%s%s\n", HelloPrefix, host)
	})
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "n must be a byte count", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 256<<10)
		for n > 0 {
			k, err := w.Write(buf[:min(int64(len(buf)), n)])
			if err != nil {
				return
			}
			n -= int64(k)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	in.closers = append(in.closers, srv)
	go srv.Serve(ln)
	go in.serveDNSTCP(dnsTCP)
	for _, pc := range dnsUDP {
		go in.serveDNSUDP(pc)
	}
}

func (in *Internet) close() {
	for _, c := range in.closers {
		c.Close()
	}
	if l, err := netlink.LinkByName(in.link); err == nil {
		_ = netlink.LinkDel(l) // takes the peer and the routes along
	}
	if in.ns != nil {
		in.ns.Close()
	}
}

func (in *Internet) serveDNSUDP(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := in.answer(buf[:n]); resp != nil {
			_, _ = pc.WriteTo(resp, from)
		}
	}
}

func (in *Internet) serveDNSTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			for {
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				resp := in.answer(q)
				if resp == nil {
					return
				}
				out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
				if _, err := c.Write(append(out, resp...)); err != nil {
					return
				}
			}
		}()
	}
}

// answer builds the response to a DNS query: A records for Names,
// NOERROR without records for their other types, NXDOMAIN otherwise.
func (in *Internet) answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	h.Response, h.Authoritative, h.RecursionAvailable = true, true, true
	name := strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))
	addr, known := in.Names[name]
	if !known {
		h.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, h)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil
	}
	if known && q.Type == dnsmessage.TypeA && q.Class == dnsmessage.ClassINET {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5}
		if b.AResource(rh, dnsmessage.AResource{A: addr.As4()}) != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

func hostNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(32, 32)}
}

// coveringRoute describes a route of the machine (main table, not a
// default route) that covers a, or returns "".
func coveringRoute(a netip.Addr) (string, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", err
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if ones, _ := r.Dst.Mask.Size(); ones > 0 && r.Dst.Contains(net.IP(a.AsSlice())) {
			return r.Dst.String(), nil
		}
	}
	return "", nil
}

func threadNetns() (*os.File, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return os.Open("/proc/thread-self/ns/net")
}

// newNetns creates a network namespace held only by the returned file.
func newNetns(home *os.File) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		f, err := os.Open("/proc/thread-self/ns/net")
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{f, err}
	}()
	r := <-ch
	return r.f, r.err
}

// do runs fn on a thread inside ns.
func do(ns, home *os.File, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err := fn()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Get fetches url from the machine itself (not a sandbox) and returns the
// body: the control that shows a test host is there.
func Get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// HostListener listens on every IPv4 address of the host, accepting and
// closing connections, as a stand-in for sbxd's API port, until the test
// ends. It returns the port.
func HostListener(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}
