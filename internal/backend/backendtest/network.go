package backendtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/internal/backend"
	"github.com/sbx-dev/sbx/internal/network/nettest"
)

// The network checks run against a test internet (package nettest): hosts
// in a network namespace the test creates, at addresses in documentation,
// private, CGNAT and link-local ranges. Nothing is sent anywhere else.

// fastFail is how soon a refused connection must fail: a reject, not a
// drop that leaves the caller waiting for a timeout.
const fastFail = time.Second

// netEnv is a backend whose sandboxes resolve names with the test
// internet's DNS server.
type netEnv struct {
	*env
	in  *nettest.Internet
	dns netip.Addr
}

func (s *suite) netEnv(t *testing.T) *netEnv {
	in := nettest.New(t)
	// The resolver sits in a private range, as many clouds' do: DNS to it
	// must work although the range is otherwise unreachable.
	dns := in.Blocked["10.0.0.0/8"]
	dir := StateDir(t)
	b := s.h.OpenNetwork(t, dir, []netip.Addr{dns})
	e := &env{t: t, s: s, dir: dir, b: b, specs: map[string]backend.Spec{}}
	return &netEnv{env: e, in: in, dns: dns}
}

// probe is the outcome of a TCP connection attempt from inside a sandbox.
type probe struct {
	open bool
	took time.Duration
	msg  string
}

// connect tries a TCP connection to addr:port from inside inst.
func connect(t testing.TB, inst *backend.Instance, addr string, port int) probe {
	t.Helper()
	script := fmt.Sprintf(`s=$(date +%%s%%N)
if out=$(timeout 5 bash -c 'exec 3<>/dev/tcp/%s/%d' 2>&1); then r=open; else r="failed: $out"; fi
e=$(date +%%s%%N)
echo "$(( (e - s) / 1000000 )) $r"`, addr, port)
	ms, r, _ := strings.Cut(output(t, inst, script), " ")
	n, _ := strconv.Atoi(ms)
	return probe{open: r == "open", took: time.Duration(n) * time.Millisecond, msg: r}
}

// refused asserts that a connection from inst to addr:port fails, at once.
func refused(t testing.TB, inst *backend.Instance, what, addr string, port int) {
	t.Helper()
	p := connect(t, inst, addr, port)
	t.Logf("%s (%s:%d): %s after %v", what, addr, port, p.msg, p.took)
	switch {
	case p.open:
		t.Errorf("%s (%s:%d) is reachable from the sandbox", what, addr, port)
	case p.took > fastFail:
		t.Errorf("%s (%s:%d): refused only after %v (%s); want a fast failure", what, addr, port, p.took, p.msg)
	case !strings.Contains(p.msg, "refused") && !strings.Contains(p.msg, "unreachable"):
		t.Errorf("%s (%s:%d): %s; want connection refused or unreachable", what, addr, port, p.msg)
	}
}

// fetch GETs the test host at a from inside inst and checks who answered.
func (n *netEnv) fetch(t testing.TB, inst *backend.Instance, a netip.Addr) {
	t.Helper()
	r := sh(t, inst, "curl -sS --max-time 5 "+nettest.URL(a))
	want := nettest.HelloPrefix + a.String()
	if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != want {
		t.Errorf("curl %s from the sandbox: exit %d, %q %q; want %q", nettest.URL(a), r.ExitCode, r.Stdout, r.Stderr, want)
	}
}

// control checks that the test hosts answer the machine itself, so that a
// refusal seen from a sandbox is the sandbox's policy at work.
func (n *netEnv) control(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range n.in.Addrs() {
		if _, err := nettest.Get(ctx, nettest.URL(a)); err != nil {
			t.Fatalf("test host %s does not answer the machine itself: %v", a, err)
		}
	}
}

func (s *suite) testNetwork(t *testing.T) {
	if s.h.OpenNetwork == nil {
		if s.h.Open(t, StateDir(t)).Capabilities().Egress {
			t.Fatal("the backend reports Egress but its Harness has no OpenNetwork")
		}
		t.Skip("backend reports no egress")
	}
	n := s.netEnv(t)
	if !n.b.Capabilities().Egress {
		t.Skip("backend reports no egress")
	}
	n.control(t)
	def := n.start(n.spec(newID(t, "net")))

	t.Run("Internet", func(t *testing.T) {
		n.fetch(t, def, n.in.Public)
		n.fetch(t, def, n.in.Public2)
	})
	t.Run("DNS", func(t *testing.T) {
		got := output(t, def, "getent ahostsv4 "+nettest.WebName+" | awk 'NR==1 {print $1}'")
		if got != n.in.Public.String() {
			t.Errorf("%s resolves to %q in the sandbox, want %s", nettest.WebName, got, n.in.Public)
		}
		n.fetch(t, def, n.in.Public) // by address; and by name:
		if r := sh(t, def, "curl -sS --max-time 5 http://"+nettest.WebName+"/"); !strings.Contains(r.Stdout, n.in.Public.String()) {
			t.Errorf("curl by name: %q %q", r.Stdout, r.Stderr)
		}
		if got := output(t, def, "getent hosts $(hostname) | awk '{print $1}'"); got == "" || strings.HasPrefix(got, "127.") {
			t.Errorf("the sandbox's own name resolves to %q, want its address", got)
		}
	})
	t.Run("NoIPv6", func(t *testing.T) {
		// No IPv6 address but loopback's, so nothing IPv6 gets out.
		if got := output(t, def, "ip -6 -o addr show scope global; ip -6 -o addr show dev eth0"); got != "" {
			t.Errorf("IPv6 addresses in the sandbox: %q", got)
		}
		p := connect(t, def, "2001:db8::1", 80)
		if p.open || p.took > fastFail {
			t.Errorf("IPv6 connection: %+v; want a fast failure", p)
		}
	})
	t.Run("BlockedRanges", func(t *testing.T) {
		for what, a := range n.in.Blocked {
			refused(t, def, what, a.String(), 80)
		}
	})
	t.Run("Host", func(t *testing.T) {
		// A listener on every address of the machine stands in for the
		// API port: no host address reaches it from a sandbox.
		port := nettest.HostListener(t)
		targets := map[string]bool{n.in.HostSide.String(): true}
		targets[output(t, def, "ip -4 route show default | awk '{print $3}'")] = true
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() {
				targets[ip.IP.String()] = true
			}
		}
		for a := range targets {
			c, err := net.DialTimeout("tcp4", net.JoinHostPort(a, strconv.Itoa(port)), time.Second)
			if err != nil {
				t.Fatalf("control: the listener is not reachable from the machine at %s: %v", a, err)
			}
			c.Close()
			refused(t, def, "host address", a, port)
		}
	})
	t.Run("OtherSandbox", func(t *testing.T) {
		if sh(t, def, "command -v python3").ExitCode != 0 {
			t.Skip("image has no python3")
		}
		other := n.start(n.spec(newID(t, "peer")))
		addr := output(t, other, "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")
		done := make(chan struct{})
		go func() {
			defer close(done)
			sh(t, other, `exec python3 -c 'import os, socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen()
for _ in range(200):
    if os.path.exists("/tmp/stop-listener"): break
    time.sleep(0.05)'`)
		}()
		defer func() {
			output(t, other, "touch /tmp/stop-listener")
			<-done
		}()
		// Control: the listener is up, as the other sandbox itself sees.
		deadline := time.Now().Add(5 * time.Second)
		for !connect(t, other, addr, 8080).open {
			if time.Now().After(deadline) {
				t.Fatal("the other sandbox's listener never came up")
			}
			time.Sleep(50 * time.Millisecond)
		}
		refused(t, def, "another sandbox", addr, 8080)
	})
	t.Run("None", func(t *testing.T) {
		spec := n.spec(newID(t, "none"))
		spec.Network = backend.Network{None: true}
		inst := n.start(spec)
		if got := output(t, inst, "ls /sys/class/net"); got != "lo" {
			t.Errorf("interfaces = %q, want only lo", got)
		}
		if got := output(t, inst, "ip -4 route show"); got != "" {
			t.Errorf("routes = %q, want none", got)
		}
		p := connect(t, inst, n.in.Public.String(), 80)
		if p.open || !strings.Contains(p.msg, "unreachable") || p.took > fastFail {
			t.Errorf("connect from a sandbox without network: %+v; want network unreachable at once", p)
		}
	})
	t.Run("AllowList", func(t *testing.T) {
		spec := n.spec(newID(t, "allow"))
		spec.Network = backend.Network{Allow: []string{n.in.Public.String()}}
		inst := n.start(spec)
		n.fetch(t, inst, n.in.Public)
		refused(t, inst, "outside the allow list", n.in.Public2.String(), 80)
		refused(t, inst, "private range", n.in.Blocked["10.0.0.0/8"].String(), 80)
		if got := output(t, inst, "getent ahostsv4 "+nettest.Web2Name+" | awk 'NR==1 {print $1}'"); got != n.in.Public2.String() {
			t.Errorf("DNS under an allow list: %q", got)
		}
	})
	t.Run("AllowHostName", func(t *testing.T) {
		spec := n.spec(newID(t, "allowname"))
		spec.Network = backend.Network{Allow: []string{nettest.Web2Name}}
		inst := n.start(spec)
		n.fetch(t, inst, n.in.Public2)
		refused(t, inst, "outside the allow list", n.in.Public.String(), 80)
	})
	t.Run("DenyList", func(t *testing.T) {
		spec := n.spec(newID(t, "deny"))
		spec.Network = backend.Network{Deny: []string{nettest.WebName, "192.0.2.0/24"}}
		inst := n.start(spec)
		refused(t, inst, "denied", n.in.Public.String(), 80)
		n.fetch(t, inst, n.in.Public2)
	})
	t.Run("UnresolvableHostName", func(t *testing.T) {
		id := newID(t, "nxname")
		spec := n.spec(id)
		spec.Network = backend.Network{Allow: []string{"nowhere.sbx.test"}}
		if _, err := n.b.Start(ctx(t), spec); err == nil {
			n.b.Destroy(context.Background(), id)
			t.Fatal("Start with an allow entry that does not resolve succeeded")
		}
		n.assertGone(t, id, 0, "")
	})
	t.Run("DestroyRemovesInterface", func(t *testing.T) {
		id := newID(t, "netgone")
		inst := n.start(n.spec(id))
		// eth0's peer, on the host, by its host ifindex.
		peer, err := strconv.Atoi(output(t, inst, "cat /sys/class/net/eth0/iflink"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := net.InterfaceByIndex(peer); err != nil {
			t.Fatalf("host end of eth0 (ifindex %d) not found: %v", peer, err)
		}
		if err := n.b.Destroy(ctx(t), id); err != nil {
			t.Fatal(err)
		}
		// The kernel may take a moment over it, and backends may hand it
		// to the background, but it goes.
		deadline := time.Now().Add(5 * time.Second)
		for {
			ifc, err := net.InterfaceByIndex(peer)
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("host interface %s of a destroyed sandbox is left", ifc.Name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("AdoptKeepsNetwork", func(t *testing.T) {
		id := newID(t, "netadopt")
		spec := n.spec(id)
		spec.Network = backend.Network{Deny: []string{n.in.Public2.String()}}
		n.start(spec)
		b2 := s.h.OpenNetwork(t, n.dir, []netip.Addr{n.dns})
		inst, err := b2.Adopt(ctx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		n.fetch(t, inst, n.in.Public)
		refused(t, inst, "denied before the restart", n.in.Public2.String(), 80)
		if err := b2.Destroy(ctx(t), id); err != nil {
			t.Fatal(err)
		}
	})
}
