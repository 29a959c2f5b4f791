package network

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/internal/network/nettest"
)

// These tests run the host side for real (root) against network
// namespaces standing in for sandboxes, and the test internet of nettest.
// Traffic goes only to namespaces the tests create.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("network tests need root")
		}
		t.Skip("network tests need root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("nft not installed (apt-get install nftables)")
	}
}

func randomName(t *testing.T) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b[:])
}

// openHost opens a Host over a fresh state dir; it is closed (and, with no
// sandbox left, torn down) when t ends.
func openHost(t *testing.T, cfg Config) *Host {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = randomName(t)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(t.TempDir(), "network")
	}
	h, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// sandboxNS is a network namespace standing in for a sandbox.
type sandboxNS struct {
	f    *os.File
	home *os.File
}

func newSandboxNS(t *testing.T) *sandboxNS {
	t.Helper()
	home, err := currentNetns()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { home.Close() })
	ch := make(chan *os.File, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		f, err := os.Open("/proc/thread-self/ns/net")
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		if err != nil {
			errc <- err
			return
		}
		ch <- f
	}()
	select {
	case err := <-errc:
		t.Fatalf("new netns: %v", err)
	case f := <-ch:
		t.Cleanup(func() { f.Close() })
		return &sandboxNS{f: f, home: home}
	}
	return nil
}

// dial connects to addr (host:port) from inside the namespace and reports
// the error and how long it took.
func (s *sandboxNS) dial(addr string) (time.Duration, error) {
	var took time.Duration
	var derr error
	err := inNetns(int(s.f.Fd()), int(s.home.Fd()), func() error {
		t0 := time.Now()
		c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
		took = time.Since(t0)
		if err == nil {
			c.Close()
		}
		derr = err
		return nil
	})
	if err != nil {
		return 0, err
	}
	return took, derr
}

// get fetches url from inside the namespace.
func (s *sandboxNS) get(url string) (string, error) {
	var body string
	var gerr error
	err := inNetns(int(s.f.Fd()), int(s.home.Fd()), func() error {
		// Plain HTTP/1.0 over a socket made on this thread, in the
		// namespace (an http.Client would dial elsewhere).
		c, err := net.DialTimeout("tcp4", strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")+":80", 5*time.Second)
		if err != nil {
			gerr = err
			return nil
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
		raw, err := io.ReadAll(c)
		if err != nil {
			gerr = err
			return nil
		}
		_, b, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
		body = string(b)
		return nil
	})
	if err != nil {
		return "", err
	}
	return body, gerr
}

// lookup asks nameserver ns for the A records of name over UDP from
// inside the namespace, as the sandbox's libc would. (Go's resolver is of
// no use here: it dials on goroutines of its own, outside the namespace.)
func (s *sandboxNS) lookup(ns netip.Addr, name string) ([]netip.Addr, error) {
	q := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	q.StartQuestions()
	q.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	query, err := q.Finish()
	if err != nil {
		return nil, err
	}
	var resp []byte
	var lerr error
	err = inNetns(int(s.f.Fd()), int(s.home.Fd()), func() error {
		c, err := net.Dial("udp4", netip.AddrPortFrom(ns, 53).String())
		if err != nil {
			lerr = err
			return nil
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, lerr = c.Write(query); lerr != nil {
			return nil
		}
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		resp, lerr = buf[:n], err
		return nil
	})
	if err != nil {
		return nil, err
	}
	if lerr != nil {
		return nil, lerr
	}
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		return nil, err
	}
	if m.RCode != dnsmessage.RCodeSuccess {
		return nil, fmt.Errorf("DNS answer %v", m.RCode)
	}
	var out []netip.Addr
	for _, a := range m.Answers {
		if r, ok := a.Body.(*dnsmessage.AResource); ok {
			out = append(out, netip.AddrFrom4(r.A))
		}
	}
	return out, nil
}

// attach prepares and connects a sandbox namespace with policy p.
func attach(t *testing.T, h *Host, id string, p Policy) (*sandboxNS, *Attachment) {
	t.Helper()
	s := newSandboxNS(t)
	ctx := context.Background()
	t0 := time.Now()
	a, err := h.Prepare(ctx, id, p)
	if err != nil {
		t.Fatalf("Prepare(%s): %v", id, err)
	}
	t.Cleanup(func() {
		if err := h.Release(context.Background(), id); err != nil {
			t.Errorf("Release(%s): %v", id, err)
		}
	})
	t1 := time.Now()
	if err := h.Connect(ctx, a, int(s.f.Fd())); err != nil {
		t.Fatalf("Connect(%s): %v", id, err)
	}
	t.Logf("%s: Prepare %v, Connect %v", id, t1.Sub(t0), time.Since(t1))
	return s, a
}

// refusedFast asserts that a TCP connection to addr fails, and at once.
func refusedFast(t *testing.T, s *sandboxNS, what, addr string) {
	t.Helper()
	took, err := s.dial(addr)
	if err == nil {
		t.Errorf("%s (%s) reachable from the sandbox", what, addr)
		return
	}
	if took > time.Second {
		t.Errorf("%s (%s): refused only after %v (%v); want a fast failure", what, addr, took, err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EHOSTUNREACH) && !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("%s (%s): %v; want connection refused or unreachable", what, addr, err)
	}
}

func reachable(t *testing.T, s *sandboxNS, a netip.Addr) {
	t.Helper()
	body, err := s.get(nettest.URL(a))
	if err != nil {
		t.Errorf("GET %s from the sandbox: %v", nettest.URL(a), err)
	} else if want := nettest.HelloPrefix + a.String(); strings.TrimSpace(body) != want {
		t.Errorf("GET %s from the sandbox = %q, want %q", nettest.URL(a), body, want)
	}
}

func TestEgressPolicy(t *testing.T) {
	requireRoot(t)
	in := nettest.New(t)
	dns := in.Blocked["10.0.0.0/8"] // a resolver in a private range, like many clouds'
	h := openHost(t, Config{Nameservers: []netip.Addr{dns}})

	// Control: every test host answers the machine itself, with the
	// built-in page and with one a test adds.
	ctx := context.Background()
	in.Handle("GET /extra", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "extra") }))
	for _, a := range in.Addrs() {
		if _, err := nettest.Get(ctx, nettest.URL(a)); err != nil {
			t.Fatalf("test host %s does not answer the machine itself: %v", a, err)
		}
	}
	if got, err := nettest.Get(ctx, nettest.URL(in.Public)+"extra"); err != nil || got != "extra" {
		t.Fatalf("added handler: %q, %v", got, err)
	}

	def, defA := attach(t, h, "default", Policy{})
	other, otherA := attach(t, h, "other", Policy{})

	t.Run("Internet", func(t *testing.T) {
		reachable(t, def, in.Public)
		reachable(t, def, in.Public2)
	})
	t.Run("DNS", func(t *testing.T) {
		got, err := def.lookup(dns, nettest.WebName)
		if err != nil || len(got) != 1 || got[0] != in.Public {
			t.Errorf("resolve %s = %v, %v; want %v", nettest.WebName, got, err, in.Public)
		}
	})
	t.Run("BlockedRanges", func(t *testing.T) {
		for what, a := range in.Blocked {
			refusedFast(t, def, what, a.String()+":80")
		}
	})
	t.Run("Host", func(t *testing.T) {
		// A listener on every host address, sbxd's API port stand-in.
		port := nettest.HostListener(t)
		addrs := []netip.Addr{h.Gateway(), in.HostSide}
		for _, a := range hostAddrs(t) {
			addrs = append(addrs, a)
		}
		for _, a := range addrs {
			if c, err := net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", a, port), time.Second); err != nil {
				t.Fatalf("control: host listener not reachable from the host at %s: %v", a, err)
			} else {
				c.Close()
			}
			refusedFast(t, def, "host address", fmt.Sprintf("%s:%d", a, port))
		}
	})
	t.Run("OtherSandbox", func(t *testing.T) {
		// The other sandbox listens; the first must not get through.
		var ln net.Listener
		if err := inNetns(int(other.f.Fd()), int(other.home.Fd()), func() (err error) {
			ln, err = net.Listen("tcp4", "0.0.0.0:8080")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		refusedFast(t, def, "another sandbox", otherA.Addr().String()+":8080")
		_ = defA
	})

	t.Run("AllowList", func(t *testing.T) {
		s, _ := attach(t, h, "allow", Policy{Allow: []string{in.Public.String() + "/32"}})
		reachable(t, s, in.Public)
		refusedFast(t, s, "not in the allow list", in.Public2.String()+":80")
		refusedFast(t, s, "private despite the allow list", in.Blocked["10.0.0.0/8"].String()+":80")
		if got, err := s.lookup(dns, nettest.WebName); err != nil || len(got) != 1 {
			t.Errorf("DNS under an allow list: %v, %v", got, err)
		}
	})
	t.Run("AllowHostName", func(t *testing.T) {
		s, _ := attach(t, h, "allowname", Policy{Allow: []string{nettest.Web2Name}})
		reachable(t, s, in.Public2)
		refusedFast(t, s, "not in the allow list", in.Public.String()+":80")
	})
	t.Run("DenyList", func(t *testing.T) {
		s, _ := attach(t, h, "deny", Policy{Deny: []string{nettest.WebName}})
		refusedFast(t, s, "denied", in.Public.String()+":80")
		reachable(t, s, in.Public2)
	})
	t.Run("DenyWinsOverAllow", func(t *testing.T) {
		s, _ := attach(t, h, "both", Policy{Allow: []string{"203.0.113.0/24", "198.51.100.0/24"}, Deny: []string{in.Public2.String()}})
		reachable(t, s, in.Public)
		refusedFast(t, s, "denied", in.Public2.String()+":80")
	})
	t.Run("UnresolvableName", func(t *testing.T) {
		if _, err := h.Prepare(ctx, "nx", Policy{Allow: []string{"nowhere.sbx.test"}}); err == nil {
			h.Release(ctx, "nx")
			t.Fatal("Prepare with an allow entry that does not resolve succeeded")
		}
		if _, err := os.Stat(h.recordPath("nx")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("failed Prepare left a record: %v", err)
		}
	})
	t.Run("NoIPv6", func(t *testing.T) {
		err := inNetns(int(def.f.Fd()), int(def.home.Fd()), func() error {
			eth, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			addrs, err := netlink.AddrList(eth, netlink.FAMILY_V6)
			if err != nil {
				return err
			}
			if len(addrs) > 0 {
				return fmt.Errorf("eth0 has IPv6 addresses %v", addrs)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
}

// hostAddrs returns the machine's own IPv4 addresses, but loopback.
func hostAddrs(t *testing.T) []netip.Addr {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		if ip = ip.Unmap(); !ip.IsLoopback() {
			out = append(out, ip)
		}
	}
	return out
}

// TestRestartKeepsPolicy reopens the host over the same state, as sbxd
// does after a restart, and checks that attached sandboxes keep their
// connectivity and policy, and that Release then removes everything.
func TestRestartKeepsPolicy(t *testing.T) {
	requireRoot(t)
	in := nettest.New(t)
	name := randomName(t)
	state := filepath.Join(t.TempDir(), "network")
	cfg := Config{Name: name, StateDir: state, Nameservers: []netip.Addr{in.Public}}
	h1, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			h1.Close()
		}
	})
	s, a := attach(t, h1, "keep", Policy{Deny: []string{in.Public2.String()}})
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if _, err := netlink.LinkByName(h1.bridge); err != nil {
		t.Fatalf("Close with a sandbox attached removed the bridge: %v", err)
	}

	h2 := openHost(t, cfg)
	if h2.Subnet() != h1.Subnet() {
		t.Errorf("subnet after restart = %v, want %v", h2.Subnet(), h1.Subnet())
	}
	reachable(t, s, in.Public)
	refusedFast(t, s, "denied before the restart", in.Public2.String()+":80")
	if ids, _ := h2.IDs(); !slices.Contains(ids, "keep") {
		t.Errorf("IDs after restart = %v, want keep", ids)
	}

	if err := h2.Release(context.Background(), "keep"); err != nil {
		t.Fatal(err)
	}
	h2.Wait()
	if _, err := netlink.LinkByName(hostVeth(a.Addr())); err == nil {
		t.Errorf("veth %s survived Release", hostVeth(a.Addr()))
	}
	out, _ := exec.Command("nft", "list", "table", "inet", h2.table()).CombinedOutput()
	if bytes.Contains(out, []byte(chainName(a.Addr()))) || bytes.Contains(out, []byte(a.Addr().String())) {
		t.Errorf("firewall still mentions the released sandbox:\n%s", out)
	}
	if ids, _ := h2.IDs(); len(ids) != 0 {
		t.Errorf("IDs after Release = %v", ids)
	}
	if entries, _ := os.ReadDir(h2.leaseDir()); len(entries) != 0 {
		t.Errorf("leases left: %v", entries)
	}
}

// TestCloseRestoresHost checks that an instance without sandboxes leaves
// nothing behind: no bridge, table or state, and IP forwarding as found
// when no other instance needs it.
func TestCloseRestoresHost(t *testing.T) {
	requireRoot(t)
	before, err := os.ReadFile("/proc/sys/" + ipForward)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "network")
	h, err := Open(Config{Name: randomName(t), StateDir: state, Nameservers: []netip.Addr{netip.MustParseAddr("203.0.113.53")}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile("/proc/sys/" + ipForward); strings.TrimSpace(string(got)) != "1" {
		t.Errorf("ip_forward = %q while a bridge is up, want 1", got)
	}
	if !h.tableExists(context.Background()) {
		t.Errorf("no table %s after Open", h.table())
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(h.bridge); err == nil {
		t.Errorf("bridge %s survived Close", h.bridge)
	}
	if h.tableExists(context.Background()) {
		t.Errorf("table %s survived Close", h.table())
	}
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state dir survived Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(forwardUsers(), h.name)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("forwarding claim survived Close: %v", err)
	}
	if users, _ := os.ReadDir(forwardUsers()); len(users) == 0 {
		if got, _ := os.ReadFile("/proc/sys/" + ipForward); !bytes.Equal(got, before) {
			t.Errorf("ip_forward = %q after the last instance closed, want %q as found", got, before)
		}
	}
}

// TestCrashRecovery simulates sbxd dying between steps of an attachment:
// a lease without a record is swept on Open, a record whose namespace is
// gone is released cleanly.
func TestCrashRecovery(t *testing.T) {
	requireRoot(t)
	name := randomName(t)
	state := filepath.Join(t.TempDir(), "network")
	cfg := Config{Name: name, StateDir: state, Nameservers: []netip.Addr{netip.MustParseAddr("203.0.113.53")}}
	h1, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := newSandboxNS(t)
	a, err := h1.Prepare(context.Background(), "dead", Policy{Allow: []string{"203.0.113.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h1.Connect(context.Background(), a, int(s.f.Fd())); err != nil {
		t.Fatal(err)
	}
	// An orphaned lease: the crash hit between lease and record.
	orphan := offset(h1.Subnet().Addr(), 200)
	if err := os.WriteFile(filepath.Join(h1.leaseDir(), orphan.String()), []byte("ghost"), 0o600); err != nil {
		t.Fatal(err)
	}
	h1.nl.Close() // the process is gone; nothing else of h1 runs
	h1.hostNS.Close()
	s.f.Close() // the sandbox dies with it

	h2 := openHost(t, cfg)
	if _, err := os.Stat(filepath.Join(h2.leaseDir(), orphan.String())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("orphaned lease not swept: %v", err)
	}
	ids, err := h2.IDs()
	if err != nil || !slices.Equal(ids, []string{"dead"}) {
		t.Fatalf("IDs = %v, %v; want [dead]", ids, err)
	}
	if err := h2.Release(context.Background(), "dead"); err != nil {
		t.Fatal(err)
	}
	if err := h2.Release(context.Background(), "dead"); err != nil {
		t.Errorf("second Release: %v", err)
	}
	h2.Wait()
	if entries, _ := os.ReadDir(h2.leaseDir()); len(entries) != 0 {
		t.Errorf("leases left after Release: %v", entries)
	}
	if _, err := netlink.LinkByName(hostVeth(a.Addr())); err == nil {
		t.Errorf("veth of the dead sandbox survived")
	}
}

// TestOpenRejectsBadConfig checks the errors a misconfiguration gets.
func TestOpenRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"BadName":        {Name: "Bad-Name", StateDir: "/tmp/x"},
		"LongName":       {Name: "abcdefghijkl", StateDir: "/tmp/x"},
		"NoStateDir":     {Name: "ok"},
		"IPv6Subnet":     {Name: "ok", StateDir: "/tmp/x", Subnet: netip.MustParsePrefix("fd00::/64")},
		"TinySubnet":     {Name: "ok", StateDir: "/tmp/x", Subnet: netip.MustParsePrefix("10.9.0.0/30")},
		"LoopbackServer": {Name: "ok", StateDir: "/tmp/x", Nameservers: []netip.Addr{netip.MustParseAddr("127.0.0.53")}},
	} {
		t.Run(name, func(t *testing.T) {
			if h, err := Open(cfg); err == nil {
				h.Close()
				t.Fatal("Open succeeded")
			}
		})
	}
}

// BenchmarkAttach is the per-sandbox cost of networking on the start path:
// Prepare (lease, record) and Connect (veth pair, addresses and routes by
// netlink in the sandbox's namespace, and for "policy" one nft
// transaction), against a fresh namespace each time. Release and its
// background cleanup are outside the timing.
func BenchmarkAttach(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	for _, bc := range []struct {
		name string
		p    Policy
	}{{"internet", Policy{}}, {"policy", Policy{Allow: []string{"203.0.113.0/24"}, Deny: []string{"203.0.113.9"}}}} {
		b.Run(bc.name, func(b *testing.B) {
			h, err := Open(Config{Name: "bench" + bc.name[:1], StateDir: filepath.Join(b.TempDir(), "network"),
				Nameservers: []netip.Addr{netip.MustParseAddr("203.0.113.53")}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			home, err := currentNetns()
			if err != nil {
				b.Fatal(err)
			}
			defer home.Close()
			var lat []time.Duration
			for i := range b.N {
				b.StopTimer()
				ns := benchNetns(b, home)
				id := fmt.Sprint("b", i)
				b.StartTimer()
				t0 := time.Now()
				a, err := h.Prepare(context.Background(), id, bc.p)
				if err != nil {
					b.Fatal(err)
				}
				if err := h.Connect(context.Background(), a, int(ns.Fd())); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				b.StopTimer()
				if err := h.Release(context.Background(), id); err != nil {
					b.Fatal(err)
				}
				ns.Close()
				// Let the kernel finish tearing down (it holds the
				// rtnl lock meanwhile), so that this measures the
				// setup alone; see BENCHMARKS.md for the churn case.
				h.Wait()
				time.Sleep(50 * time.Millisecond)
				b.StartTimer()
			}
			b.StopTimer()
			h.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func benchNetns(b *testing.B, home *os.File) *os.File {
	ch := make(chan *os.File, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- nil
			return
		}
		f, _ := os.Open("/proc/thread-self/ns/net")
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- f
	}()
	f := <-ch
	if f == nil {
		b.Fatal("new network namespace")
	}
	return f
}
