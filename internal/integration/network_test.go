package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
	"github.com/sbx-dev/sbx/internal/network/nettest"
)

// The network tests build their own internet (package nettest): a network
// namespace holding "public" hosts in documentation ranges and hosts in
// private, CGNAT and link-local ranges, with HTTP on port 80 and DNS on
// port 53. sbxd is pointed at that DNS server with --dns. No test sends a
// packet anywhere else.

// netDaemon starts sbxd with the test internet's resolver, which sits in
// a private range as many clouds' resolvers do.
func netDaemon(t *testing.T) (*Daemon, *nettest.Internet) {
	t.Helper()
	RequireRoot(t)
	in := nettest.New(t)
	d := StartDaemon(t, "--dns", in.Blocked["10.0.0.0/8"].String())
	return d, in
}

// tcpProbe is the outcome of a TCP connection attempt from a sandbox.
type tcpProbe struct {
	open bool
	took time.Duration
	msg  string
}

func probeTCP(t *testing.T, d *Daemon, id, addr string, port int) tcpProbe {
	t.Helper()
	res := mustExec(t, d, id, fmt.Sprintf(`s=$(date +%%s%%N)
if out=$(timeout 5 bash -c 'exec 3<>/dev/tcp/%s/%d' 2>&1); then r=open; else r="failed: $out"; fi
e=$(date +%%s%%N)
echo "$(( (e - s) / 1000000 )) $r"`, addr, port))
	ms, r, _ := strings.Cut(strings.TrimSpace(res.Stdout), " ")
	n, _ := strconv.Atoi(ms)
	return tcpProbe{open: r == "open", took: time.Duration(n) * time.Millisecond, msg: r}
}

// assertRefused checks that addr:port is unreachable from sandbox id and
// that the attempt fails at once rather than timing out.
func assertRefused(t *testing.T, d *Daemon, id, what, addr string, port int) {
	t.Helper()
	p := probeTCP(t, d, id, addr, port)
	switch {
	case p.open:
		t.Errorf("%s (%s:%d) is reachable from sandbox %s", what, addr, port, id)
	case p.took > time.Second:
		t.Errorf("%s (%s:%d): failed only after %v (%s); want a fast failure", what, addr, port, p.took, p.msg)
	case !strings.Contains(p.msg, "refused") && !strings.Contains(p.msg, "unreachable"):
		t.Errorf("%s (%s:%d): %s; want connection refused or unreachable", what, addr, port, p.msg)
	}
}

// curl fetches url in sandbox id and returns stdout and the exit code.
func curl(t *testing.T, d *Daemon, id, url string) (string, int) {
	t.Helper()
	res := mustExec(t, d, id, "curl -sS --max-time 5 "+url)
	return strings.TrimSpace(res.Stdout), res.ExitCode
}

func assertFetches(t *testing.T, d *Daemon, id, url, want string) {
	t.Helper()
	if got, code := curl(t, d, id, url); code != 0 || got != want {
		t.Errorf("curl %s in %s: exit %d, %q; want %q", url, id, code, got, want)
	}
}

func TestNetworkEgress(t *testing.T) {
	d, in := netDaemon(t)
	const id = "net-default"
	hello := func(a fmt.Stringer) string { return nettest.HelloPrefix + a.String() }

	t.Run("Internet", func(t *testing.T) {
		assertFetches(t, d, id, nettest.URL(in.Public), hello(in.Public))
		assertFetches(t, d, id, nettest.URL(in.Public2), hello(in.Public2))
	})
	t.Run("DNS", func(t *testing.T) {
		assertFetches(t, d, id, "http://"+nettest.WebName+"/", hello(in.Public))
		res := mustExec(t, d, id, "getent ahostsv4 "+nettest.Web2Name+" | awk 'NR==1 {print $1}'")
		if got := strings.TrimSpace(res.Stdout); got != in.Public2.String() {
			t.Errorf("%s resolves to %q, want %s", nettest.Web2Name, got, in.Public2)
		}
	})
	t.Run("BlockedRanges", func(t *testing.T) {
		ctx := ctxT(t)
		for what, a := range in.Blocked {
			// Control: the test host is there for the machine itself.
			if _, err := nettest.Get(ctx, nettest.URL(a)); err != nil {
				t.Fatalf("test host %s (%s) does not answer the machine: %v", a, what, err)
			}
			assertRefused(t, d, id, what, a.String(), 80)
		}
	})
	t.Run("APIPort", func(t *testing.T) {
		_, apiPort, _ := net.SplitHostPort(d.Addr)
		port, _ := strconv.Atoi(apiPort)
		// The API served on every host address, as a daemon listening
		// on 0.0.0.0 would: a relay to the real port.
		relay := relayTo(t, d.Addr)
		targets := hostTargets(t, d, id, in)
		for _, a := range targets {
			// Control: the machine itself gets the API through the relay.
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://%s/healthz", net.JoinHostPort(a, strconv.Itoa(relay))))
			if err != nil {
				t.Fatalf("control: the API relay is not reachable at %s: %v", a, err)
			}
			resp.Body.Close()
			assertRefused(t, d, id, "sbxd's API via the host address", a, relay)
			assertRefused(t, d, id, "sbxd's API port on the host address", a, port)
		}
		// The sandbox's loopback is its own.
		assertRefused(t, d, id, "sbxd's API port on loopback", "127.0.0.1", port)
	})
	t.Run("OtherSandbox", func(t *testing.T) {
		const peer = "net-peer"
		addr := strings.TrimSpace(mustExec(t, d, peer, "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1").Stdout)
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Runs until the test touches /tmp/stop (10 s at most).
			d.Client.Sandbox(peer).Exec(context.Background(), `exec python3 -c 'import os, socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen()
for _ in range(200):
    if os.path.exists("/tmp/stop"): break
    time.sleep(0.05)'`)
		}()
		defer func() {
			mustExec(t, d, peer, "touch /tmp/stop")
			<-done
		}()
		deadline := time.Now().Add(5 * time.Second)
		for !probeTCP(t, d, peer, addr, 8080).open {
			if time.Now().After(deadline) {
				t.Fatal("control: the peer's listener never came up")
			}
			time.Sleep(50 * time.Millisecond)
		}
		assertRefused(t, d, id, "another sandbox", addr, 8080)
	})
}

// hostTargets returns the addresses by which a sandbox might try to reach
// the host: its gateway, the host's end of the link to the test internet
// and every non-loopback IPv4 address of the machine.
func hostTargets(t *testing.T, d *Daemon, id string, in *nettest.Internet) []string {
	t.Helper()
	seen := map[string]bool{in.HostSide.String(): true}
	gw := strings.TrimSpace(mustExec(t, d, id, "ip -4 route show default | awk '{print $3}'").Stdout)
	if net.ParseIP(gw) == nil {
		t.Fatalf("no default route in the sandbox: %q", gw)
	}
	seen[gw] = true
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() {
			seen[ip.IP.String()] = true
		}
	}
	var out []string
	for a := range seen {
		out = append(out, a)
	}
	return out
}

// relayTo listens on every host address and relays connections to target;
// it returns the port.
func relayTo(t *testing.T, target string) int {
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
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestNetworkPolicies(t *testing.T) {
	d, in := netDaemon(t)
	ctx := ctxT(t)
	hello := func(a fmt.Stringer) string { return nettest.HelloPrefix + a.String() }
	create := func(t *testing.T, id string, n *api.Network) *api.Sandbox {
		t.Helper()
		sb, err := d.Client.Sandbox(id).Create(ctx, &api.CreateSandboxRequest{Network: n})
		if err != nil {
			t.Fatalf("create %s with network %+v: %v", id, n, err)
		}
		return sb
	}

	t.Run("None", func(t *testing.T) {
		sb := create(t, "net-none", &api.Network{Mode: api.NetworkNone})
		if sb.Network == nil || sb.Network.Mode != api.NetworkNone {
			t.Errorf("created sandbox reports network %+v, want mode none", sb.Network)
		}
		if got := strings.TrimSpace(mustExec(t, d, "net-none", "ls /sys/class/net").Stdout); got != "lo" {
			t.Errorf("interfaces = %q, want only lo", got)
		}
		if got := strings.TrimSpace(mustExec(t, d, "net-none", "ip -4 route show").Stdout); got != "" {
			t.Errorf("routes = %q, want none", got)
		}
		p := probeTCP(t, d, "net-none", in.Public.String(), 80)
		if p.open || !strings.Contains(p.msg, "unreachable") || p.took > time.Second {
			t.Errorf("connect without network: %+v; want network unreachable at once", p)
		}
	})
	t.Run("AllowList", func(t *testing.T) {
		create(t, "net-allow", &api.Network{Allow: []string{nettest.WebName}})
		assertFetches(t, d, "net-allow", "http://"+nettest.WebName+"/", hello(in.Public))
		assertRefused(t, d, "net-allow", "outside the allow list", in.Public2.String(), 80)
		assertRefused(t, d, "net-allow", "private range", in.Blocked["10.0.0.0/8"].String(), 80)
	})
	t.Run("DenyList", func(t *testing.T) {
		sb := create(t, "net-deny", &api.Network{Deny: []string{in.Public2.String()}})
		if sb.Network == nil || len(sb.Network.Deny) != 1 || sb.Network.Deny[0] != in.Public2.String()+"/32" {
			t.Errorf("created sandbox reports network %+v", sb.Network)
		}
		assertFetches(t, d, "net-deny", nettest.URL(in.Public), hello(in.Public))
		assertRefused(t, d, "net-deny", "denied", in.Public2.String(), 80)
	})
	t.Run("SameOptionsAgain", func(t *testing.T) {
		// The string form and the object form of one policy agree.
		if _, err := d.Client.Sandbox("net-none").Create(ctx, &api.CreateSandboxRequest{Network: &api.Network{Mode: "none"}}); err != nil {
			t.Errorf("re-create with the same network: %v", err)
		}
		status, body := putRaw(t, d, "net-none", `{"network": "none"}`)
		if status != http.StatusOK {
			t.Errorf(`re-create with "none": %d %s`, status, body)
		}
	})
	t.Run("Conflict", func(t *testing.T) {
		_, err := d.Client.Sandbox("net-deny").Create(ctx, &api.CreateSandboxRequest{Network: &api.Network{Mode: api.NetworkNone}})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != api.CodeConflict || !strings.Contains(ce.Message, "network") {
			t.Errorf("re-create with another network: %v; want CONFLICT naming the network", err)
		}
	})
	t.Run("KeptAcrossRestartAndCrash", func(t *testing.T) {
		d.Restart()
		assertRefused(t, d, "net-deny", "denied after a restart", in.Public2.String(), 80)
		assertFetches(t, d, "net-deny", nettest.URL(in.Public), hello(in.Public))
		d.Kill()
		d.Start()
		assertRefused(t, d, "net-allow", "outside the allow list after a crash", in.Public2.String(), 80)
		assertFetches(t, d, "net-allow", "http://"+nettest.WebName+"/", hello(in.Public))
		assertFetches(t, d, "net-restart-new", nettest.URL(in.Public2), hello(in.Public2))
	})
	t.Run("StopAndWake", func(t *testing.T) {
		if _, err := d.Client.Sandbox("net-deny").Stop(ctx); err != nil {
			t.Fatal(err)
		}
		assertRefused(t, d, "net-deny", "denied after waking", in.Public2.String(), 80)
	})
}

// putRaw sends body as PUT /v1/sandboxes/{id} and returns the status and
// response body.
func putRaw(t *testing.T, d *Daemon, id, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, d.URL+"/v1/sandboxes/"+id, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestNetworkInvalidPolicy(t *testing.T) {
	d := StartDaemon(t)
	for _, tc := range []struct {
		name, body, hint string
	}{
		{"UnknownMode", `{"network": "bridge"}`, `use "internet" or "none"`},
		{"BadCIDR", `{"network": {"allow": ["203.0.113.0/33"]}}`, "CIDR"},
		{"IPv6", `{"network": {"deny": ["2001:db8::/32"]}}`, "IPv4 only"},
		{"PrivateAllow", `{"network": {"allow": ["10.1.2.0/24"]}}`, "never reach"},
		{"MetadataAllow", `{"network": {"allow": ["169.254.169.254"]}}`, "link-local"},
		{"BadHostName", `{"network": {"allow": ["exa mple.com"]}}`, "host name"},
		{"NoneWithLists", `{"network": {"mode": "none", "allow": ["203.0.113.7"]}}`, "takes no allow or deny"},
		{"UnknownField", `{"network": {"alow": ["203.0.113.7"]}}`, "alow"},
		{"WrongType", `{"network": 5}`, "network must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "bad-" + strings.ToLower(tc.name)
			status, body := putRaw(t, d, id, tc.body)
			var e api.Error
			_ = json.Unmarshal([]byte(body), &e)
			if status != http.StatusBadRequest || e.Code != api.CodeInvalidRequest || !strings.Contains(e.Message, tc.hint) {
				t.Errorf("PUT %s: %d %s; want 400 INVALID_REQUEST mentioning %q", tc.body, status, body, tc.hint)
			}
			// Nothing was created.
			if _, err := d.Client.Sandbox(id).Get(ctxT(t)); !errors.Is(err, client.ErrNotFound) {
				t.Errorf("after a refused request, Get(%s) = %v; want not found", id, err)
			}
		})
	}
}

// TestNetworkLeavesNothing checks that a daemon whose sandboxes are gone
// removes its bridge, firewall table and records, also after a crash that
// left sandboxes running.
func TestNetworkLeavesNothing(t *testing.T) {
	d, in := netDaemon(t)
	ctx := ctxT(t)
	if _, err := d.Client.Sandbox("leak-a").Create(ctx, &api.CreateSandboxRequest{Network: &api.Network{Deny: []string{in.Public2.String()}}}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, d, "leak-b", "true")
	hash := dataDirHash(t, d.DataDir)
	bridge, table := "sbx-"+hash, "sbx-"+hash
	if out, err := exec.Command("ip", "link", "show", bridge).CombinedOutput(); err != nil {
		t.Fatalf("bridge %s missing while sandboxes run: %v %s", bridge, err, out)
	}
	veths := vethsOnBridge(t, bridge)
	if len(veths) != 2 {
		t.Errorf("bridge %s has ports %v, want two sandboxes'", bridge, veths)
	}

	d.Kill() // sandboxes keep running
	d.Start()
	for _, id := range []string{"leak-a", "leak-b"} {
		if err := d.Client.Sandbox(id).Destroy(ctx); err != nil {
			t.Fatal(err)
		}
	}
	d.Stop()
	if out, err := exec.Command("ip", "link", "show", bridge).CombinedOutput(); err == nil {
		t.Errorf("bridge %s left after the last sandbox and sbxd are gone:\n%s", bridge, out)
	}
	for _, v := range veths {
		if _, err := net.InterfaceByName(v); err == nil {
			t.Errorf("veth %s left", v)
		}
	}
	if out, err := exec.Command("nft", "list", "table", "inet", table).CombinedOutput(); err == nil {
		t.Errorf("nftables table %s left:\n%s", table, out)
	}
	if _, err := os.Stat(filepath.Join("/run/sbx", hash)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/run/sbx/%s left: %v", hash, err)
	}
}

// dataDirHash is the name the OCI backend derives from a data dir.
func dataDirHash(t *testing.T, dir string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:4])
}

// vethsOnBridge returns the names of the bridge's ports.
func vethsOnBridge(t *testing.T, bridge string) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show", "master", bridge).Output()
	if err != nil {
		t.Fatalf("ip link show master %s: %v", bridge, err)
	}
	var names []string
	for _, line := range strings.Split(string(bytes.TrimSpace(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			names = append(names, name)
		}
	}
	return names
}
