package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/client"
	"github.com/sbx-dev/sbx/internal/integration"
)

// benchApp serves a small page and large downloads, keeping connections
// alive (Node's standard library).
const benchApp = `
const http = require('http');
const chunk = Buffer.alloc(256 << 10, 'x');
http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  if (u.pathname === '/big') {
    const n = +u.searchParams.get('bytes');
    res.writeHead(200, {'Content-Type': 'application/octet-stream', 'Content-Length': n});
    let sent = 0;
    const more = () => {
      while (sent < n) {
        const c = Math.min(chunk.length, n - sent); sent += c;
        if (!res.write(c === chunk.length ? chunk : chunk.subarray(0, c))) return res.once('drain', more);
      }
      res.end();
    };
    return more();
  }
  // /close: the app closes the connection after answering, so the next
  // request needs a new one (through the proxy: a new tunnel).
  const head = {'Content-Type': 'text/plain', 'Content-Length': 3};
  if (u.pathname === '/close') head['Connection'] = 'close';
  res.writeHead(200, head);
  res.end('ok\n');
}).listen(+process.argv[2], '127.0.0.1');
`

const (
	benchPort = 8080
	// benchDownload is the size of one large download.
	benchDownload = 128 << 20
)

// previewBench is one running app in a sandbox, reachable through the
// preview proxy (both URL forms that do not rewrite paths) and directly.
type previewBench struct {
	hostURL, portURL string
	direct           string // the app's URL inside the sandbox
	// proxy reaches the daemon's listeners, straight the app itself.
	proxy, straight *http.Client
}

func setupPreviewBench(b *testing.B) *previewBench {
	b.Helper()
	d := integration.StartDaemon(b, "--log-level", "warn")
	ctx := context.Background()
	sb := d.Client.Sandbox("preview-bench")
	marker := make([]byte, 6)
	_, _ = rand.Read(marker)
	script := "/tmp/bench-app-" + hex.EncodeToString(marker) + ".js"
	if _, err := sb.Exec(ctx, "cat > "+script, client.WithStdin(benchApp)); err != nil {
		b.Fatal(err)
	}
	res, err := sb.Exec(ctx, fmt.Sprintf(`nohup node %s %d >/dev/null 2>&1 &
for i in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:%d/ && exit 0; sleep 0.05; done; exit 1`, script, benchPort, benchPort))
	if err != nil || res.ExitCode != 0 {
		b.Fatalf("app did not start: %v %+v", err, res)
	}
	ep, err := sb.ExposePort(ctx, benchPort)
	if err != nil {
		b.Fatal(err)
	}
	pu, _ := url.Parse(ep.URLs.Port)
	token := pu.Query().Get("token")
	pu.RawQuery = ""

	// The direct baseline: the same app, from a thread that has entered
	// the sandbox's network namespace, with no proxy in between.
	nsDial := netnsDialer(b, appPid(b, script))
	dialDaemon := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, _, _ := net.SplitHostPort(addr); strings.HasSuffix(host, ".localhost") {
			addr = d.Addr // as a browser resolves *.localhost
		}
		var dl net.Dialer
		return dl.DialContext(ctx, network, addr)
	}
	cookie := &http.Cookie{Name: "sbx_preview_" + pu.Port(), Value: token}
	jarFor := func(hc *http.Client) *http.Client {
		hc.Jar = cookieJar{pu.Host: cookie}
		return hc
	}
	newClient := func(dial func(context.Context, string, string) (net.Conn, error)) *http.Client {
		tr := &http.Transport{DialContext: dial, DisableCompression: true, MaxIdleConnsPerHost: 4}
		b.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	return &previewBench{
		hostURL:  ep.URLs.Host,
		portURL:  pu.String(),
		direct:   fmt.Sprintf("http://127.0.0.1:%d/", benchPort),
		proxy:    jarFor(newClient(dialDaemon)),
		straight: newClient(func(ctx context.Context, _, addr string) (net.Conn, error) { return nsDial(ctx, addr) }),
	}
}

// cookieJar hands the port form's cookie to requests for one host.
type cookieJar map[string]*http.Cookie

func (j cookieJar) SetCookies(*url.URL, []*http.Cookie) {}
func (j cookieJar) Cookies(u *url.URL) []*http.Cookie {
	if c := j[u.Host]; c != nil {
		return []*http.Cookie{c}
	}
	return nil
}

// appPid finds the host pid of the process whose command line names
// script.
func appPid(b *testing.B, script string) int {
	b.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range dirs {
		if cmd, err := os.ReadFile(p); err == nil && bytes.Contains(cmd, []byte(script)) && bytes.HasPrefix(cmd, []byte("node\x00")) {
			var pid int
			fmt.Sscanf(strings.Split(p, "/")[2], "%d", &pid)
			return pid
		}
	}
	b.Fatalf("no process runs %s", script)
	return 0
}

// netnsDialer returns a dial function whose connections are made inside
// the network namespace of pid, by one OS thread that stays in it.
func netnsDialer(b *testing.B, pid int) func(ctx context.Context, addr string) (net.Conn, error) {
	b.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	type dialReq struct {
		ctx  context.Context
		addr string
		res  chan result
	}
	reqs := make(chan dialReq)
	ready := make(chan error, 1)
	go func() {
		// Never unlocked: the thread leaves with the goroutine instead of
		// going back to the pool in the sandbox's namespace.
		runtime.LockOSThread()
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err == nil {
			err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
			f.Close()
		}
		ready <- err
		if err != nil {
			return
		}
		for r := range reqs {
			var d net.Dialer
			c, err := d.DialContext(r.ctx, "tcp", r.addr)
			r.res <- result{c, err}
		}
	}()
	if err := <-ready; err != nil {
		b.Fatalf("entering the sandbox's network namespace: %v", err)
	}
	b.Cleanup(func() { close(reqs) })
	return func(ctx context.Context, addr string) (net.Conn, error) {
		r := dialReq{ctx, addr, make(chan result, 1)}
		reqs <- r
		res := <-r.res
		return res.c, res.err
	}
}

func fetch(b *testing.B, hc *http.Client, u string) int64 {
	resp, err := hc.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("GET %s: %d, %d bytes, %v", u, resp.StatusCode, n, err)
	}
	return n
}

// BenchmarkPreviewLatency is one small GET of a server inside a sandbox:
// through the preview proxy (host and port forms) and, as the same-run
// baseline, directly from inside the sandbox's network namespace. The
// client keeps its connections. With keep-alive the app keeps its too, so
// the proxy reuses its tunnel; with newconn the app closes each connection
// after answering, so every request opens a new one: directly a TCP
// connect, through the proxy a tunnel (agent socket, upgrade, connect
// inside the sandbox).
func BenchmarkPreviewLatency(b *testing.B) {
	pb := setupPreviewBench(b)
	for _, conn := range []string{"keepalive", "newconn"} {
		path := ""
		if conn == "newconn" {
			path = "close"
		}
		for _, v := range []struct {
			name string
			hc   *http.Client
			url  string
		}{
			{"direct", pb.straight, pb.direct + path},
			{"preview-host", pb.proxy, pb.hostURL + path},
			{"preview-port", pb.proxy, pb.portURL + path},
		} {
			b.Run(conn+"/"+v.name, func(b *testing.B) {
				for range 20 { // warm up: pools, JIT
					fetch(b, v.hc, v.url)
				}
				timeIt(b, func(int) { fetch(b, v.hc, v.url) })
			})
		}
	}
}

// BenchmarkPreviewThroughput is a 128 MiB download from a server inside a
// sandbox, through the preview proxy and directly (same-run baseline).
func BenchmarkPreviewThroughput(b *testing.B) {
	pb := setupPreviewBench(b)
	q := fmt.Sprintf("big?bytes=%d", benchDownload)
	for _, v := range []struct {
		name string
		hc   *http.Client
		url  string
	}{
		{"direct", pb.straight, pb.direct + q},
		{"preview-host", pb.proxy, pb.hostURL + q},
	} {
		b.Run(v.name, func(b *testing.B) {
			fetch(b, v.hc, v.url)
			b.SetBytes(benchDownload)
			b.ResetTimer()
			t0 := time.Now()
			for range b.N {
				fetch(b, v.hc, v.url)
			}
			b.ReportMetric(float64(benchDownload)*float64(b.N)/time.Since(t0).Seconds()/(1<<20), "MiB/s")
		})
	}
}
