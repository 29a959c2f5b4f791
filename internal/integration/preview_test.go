package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
)

// previewApp is the app the preview tests run inside a sandbox: Node with
// its standard library only. It serves a page with an absolute link, an
// echo of the request, an SSE stream, redirects, any status, large bodies
// and a WebSocket echo (written out here: Node has no WebSocket server).
const previewApp = `
const http = require('http'), crypto = require('crypto');
const [port, host] = [+process.argv[2], process.argv[3] || '127.0.0.1'];
const server = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  switch (u.pathname) {
  case '/':
    res.writeHead(200, {'Content-Type': 'text/html'});
    return res.end('<!doctype html><script src="/static/app.js"></script><p>hello from the sandbox</p>');
  case '/static/app.js':
    res.writeHead(200, {'Content-Type': 'text/javascript'});
    return res.end('console.log("app.js loaded")');
  case '/echo': {
    let n = 0; const h = crypto.createHash('sha256');
    req.on('data', c => { n += c.length; h.update(c); });
    req.on('end', () => {
      res.writeHead(200, {'Content-Type': 'application/json', 'X-App': 'echo'});
      res.end(JSON.stringify({method: req.method, host: req.headers.host, url: req.url, headers: req.headers, bytes: n, sha256: h.digest('hex')}));
    });
    return;
  }
  case '/sse': {
    res.writeHead(200, {'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache'});
    res.write('data: first\n\n');
    let i = 0;
    const t = setInterval(() => { res.write('data: tick ' + i + '\n\n'); if (++i === 3) { clearInterval(t); res.end(); } }, 400);
    return;
  }
  case '/redirect':
    res.writeHead(302, {Location: '/elsewhere'});
    return res.end();
  case '/status':
    res.writeHead(+u.searchParams.get('code'), {'X-App': 'status'});
    return res.end('status body');
  case '/big': {
    const n = +u.searchParams.get('bytes'), chunk = Buffer.alloc(64 << 10, 'x');
    const head = {'Content-Type': 'application/octet-stream'};
    if (!u.searchParams.has('chunked')) head['Content-Length'] = n;
    res.writeHead(200, head);
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
  }
  res.writeHead(404); res.end('no such page');
});
server.on('upgrade', (req, sock) => {
  const accept = crypto.createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ' + accept + '\r\n\r\n');
  const frame = (op, p) => {
    let h;
    if (p.length < 126) h = Buffer.from([0x80 | op, p.length]);
    else if (p.length < 65536) { h = Buffer.alloc(4); h[0] = 0x80 | op; h[1] = 126; h.writeUInt16BE(p.length, 2); }
    else { h = Buffer.alloc(10); h[0] = 0x80 | op; h[1] = 127; h.writeBigUInt64BE(BigInt(p.length), 2); }
    return Buffer.concat([h, p]);
  };
  let buf = Buffer.alloc(0);
  sock.on('data', d => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      const op = buf[0] & 15, masked = buf[1] & 128;
      let len = buf[1] & 127, off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      const need = off + (masked ? 4 : 0) + len;
      if (buf.length < need) return;
      let p = Buffer.from(buf.subarray(need - len, need));
      if (masked) { const m = buf.subarray(off, off + 4); for (let i = 0; i < p.length; i++) p[i] ^= m[i & 3]; }
      buf = buf.subarray(need);
      if (op === 8) { sock.end(frame(8, p)); return; }
      if (op === 9) sock.write(frame(10, p));
      else if (op === 1 || op === 2) sock.write(frame(op, p));
    }
  });
  sock.on('error', () => {});
});
server.listen(port, host);
`

// startApp starts previewApp in sandbox id on port (bound to host) in the
// background and waits until it answers.
func startApp(t *testing.T, d *Daemon, id string, port int, host string) {
	t.Helper()
	mustExec(t, d, id, "cat > /tmp/app.js", client.WithStdin(previewApp))
	res := mustExec(t, d, id, fmt.Sprintf(`nohup node /tmp/app.js %d %s >/tmp/app-%d.log 2>&1 &
for i in $(seq 100); do curl -sf -o /dev/null http://%s/ && exit 0; sleep 0.05; done
cat /tmp/app-%d.log; exit 1`, port, host, port, net.JoinHostPort(host, fmt.Sprint(port)), port))
	if res.ExitCode != 0 {
		t.Fatalf("app did not start: %s%s", res.Stdout, res.Stderr)
	}
}

// previewClient sends requests for *.localhost to the daemon's listener,
// as a browser on this machine would resolve them, and everything else
// where it is addressed (only loopback addresses here). It never follows
// redirects.
func previewClient(d *Daemon, jar http.CookieJar) *http.Client {
	var dialer net.Dialer
	return &http.Client{
		Jar: jar,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, _, _ := net.SplitHostPort(addr)
				if strings.HasSuffix(host, ".localhost") {
					addr = d.Addr
				}
				return dialer.DialContext(ctx, network, addr)
			},
			DisableCompression: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get fetches u and returns the status and body.
func get(t *testing.T, hc *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// wantCode checks an error answer's status and code.
func wantCode(t *testing.T, hc *http.Client, u string, status int, code string) {
	t.Helper()
	st, body := get(t, hc, u)
	var e api.Error
	if st != status || json.Unmarshal([]byte(body), &e) != nil || e.Code != code {
		t.Errorf("GET %s: %d %s, want %d %s", u, st, body, status, code)
	}
}

// portFormURL returns the port form's URL without its token query, and
// the token.
func portFormURL(t *testing.T, ep *api.ExposedPort) (base, token string) {
	t.Helper()
	u, err := url.Parse(ep.URLs.Port)
	if err != nil || ep.URLs.Port == "" {
		t.Fatalf("no port-form URL: %+v", ep.URLs)
	}
	token = u.Query().Get("sbx_preview_token")
	u.RawQuery = ""
	return u.String(), token
}

// portCookie is the cookie a first visit to the port form sets.
func portCookie(portBase, token string) *http.Cookie {
	u, _ := url.Parse(portBase)
	return &http.Cookie{Name: "sbx_preview_" + u.Port(), Value: token}
}

// withToken replaces the token in a host- or path-form URL.
func withToken(u, token, other string) string { return strings.Replace(u, token, other, 1) }

func TestPreviewURLForms(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("web")
	startApp(t, d, "web", 8080, "127.0.0.1")
	ep, err := sb.ExposePort(ctx, 8080, client.WithPortName("node"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ep.URLs.Host, "http://8080-web-") || !strings.HasSuffix(ep.URLs.Host, ".localhost:"+strings.Split(d.Addr, ":")[1]+"/") ||
		ep.URL != ep.URLs.Host || ep.Name != "node" {
		t.Fatalf("unexpected URLs: %+v", ep)
	}
	hc := previewClient(d, nil)
	portBase, token := portFormURL(t, ep)

	t.Run("host form", func(t *testing.T) {
		st, body := get(t, hc, ep.URLs.Host)
		if st != 200 || !strings.Contains(body, "hello from the sandbox") {
			t.Fatalf("%d %q", st, body)
		}
		// Absolute links resolve against the same origin and work.
		if st, body := get(t, hc, ep.URLs.Host+"static/app.js"); st != 200 || !strings.Contains(body, "app.js loaded") {
			t.Errorf("absolute link: %d %q", st, body)
		}
		// Host names are case-insensitive.
		if st, _ := get(t, hc, strings.Replace(ep.URLs.Host, token, strings.ToUpper(token), 1)); st != 200 {
			t.Errorf("upper-case host: %d", st)
		}
	})
	t.Run("port form with cookie", func(t *testing.T) {
		jar, _ := cookiejar.New(nil)
		bc := previewClient(d, jar) // a browser: keeps cookies
		resp, err := bc.Get(ep.URLs.Port)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Fatalf("first visit: %d Location %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
		}
		st, body := get(t, bc, portBase)
		if st != 200 || !strings.Contains(body, `src="/static/app.js"`) {
			t.Fatalf("page after the cookie: %d %q", st, body)
		}
		if st, body := get(t, bc, portBase+"static/app.js"); st != 200 || !strings.Contains(body, "app.js loaded") {
			t.Errorf("absolute link under the port form: %d %q", st, body)
		}
		// The app never sees the token: not in the query, not as a
		// cookie; nor the token cookies of other port-form previews,
		// which the browser sends to every port of this host.
		u, _ := url.Parse(portBase)
		jar.SetCookies(u, []*http.Cookie{{Name: "sbx_preview_1", Value: "other-preview-token"}, {Name: "app", Value: "kept"}})
		st, body = get(t, bc, portBase+"echo?x=1&token=app&csrf_token=y")
		if st != 200 || strings.Contains(body, token) || strings.Contains(body, "sbx_preview_") ||
			!strings.Contains(body, `"url":"/echo?x=1&token=app&csrf_token=y"`) || !strings.Contains(body, "app=kept") {
			t.Errorf("echo through the port form: %d %s", st, body)
		}
		// Without the cookie, and with a wrong token, nothing.
		wantCode(t, hc, portBase, 404, api.CodePreviewNotFound)
		wantCode(t, hc, portBase+"?sbx_preview_token=aaaaaaaaaaaaaaaa", 404, api.CodePreviewNotFound)
		// A non-GET request with the token in the query is served at once.
		resp, err = hc.Post(portBase+"echo?sbx_preview_token="+token, "text/plain", strings.NewReader("abc"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"bytes":3`) || strings.Contains(string(b), token) {
			t.Errorf("POST with token: %d %s", resp.StatusCode, b)
		}
	})
	t.Run("path form", func(t *testing.T) {
		st, body := get(t, hc, ep.URLs.Path)
		if st != 200 || !strings.Contains(body, "hello from the sandbox") {
			t.Fatalf("%d %q", st, body)
		}
		if st, body := get(t, hc, ep.URLs.Path+"static/app.js"); st != 200 || !strings.Contains(body, "app.js loaded") {
			t.Errorf("relative fetch under the path form: %d %q", st, body)
		}
		// Documented: the page's absolute link misses the prefix.
		if st, _ := get(t, hc, d.URL+"/static/app.js"); st == 200 {
			t.Errorf("absolute link under the path form unexpectedly served")
		}
		resp, err := hc.Get(strings.TrimSuffix(ep.URLs.Path, "/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect || !strings.HasSuffix(resp.Header.Get("Location"), "/") {
			t.Errorf("path without slash: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("wrong token is 404", func(t *testing.T) {
		other := "zzzzzzzzzzzzzzzz"
		wantCode(t, hc, withToken(ep.URLs.Host, token, other), 404, api.CodePreviewNotFound)
		wantCode(t, hc, withToken(ep.URLs.Path, token, other), 404, api.CodePreviewNotFound)
		wantCode(t, hc, strings.Replace(ep.URLs.Host, "8080-web-", "8081-web-", 1), 404, api.CodePreviewNotFound)
		// The API is unaffected: a preview host never reaches it.
		if st, _ := get(t, hc, ep.URLs.Host+"v1/sandboxes"); st != 404 {
			t.Errorf("API path under a preview host: %d, want the app's 404", st)
		}
	})
	t.Run("listing", func(t *testing.T) {
		ports, err := sb.Ports(ctx)
		if err != nil || len(ports) != 1 || ports[0].Port != 8080 || ports[0].URL != ep.URL {
			t.Fatalf("ports = %+v %v", ports, err)
		}
		out, _, code := d.CLI(nil, "ports", "web", "--json")
		var listed []api.ExposedPort
		if code != 0 || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 1 || listed[0].URLs != ep.URLs {
			t.Errorf("sbx ports --json: %d %s", code, out)
		}
	})
}

func TestPreviewProxying(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("proxy")
	startApp(t, d, "proxy", 3000, "127.0.0.1")
	ep, err := sb.ExposePort(ctx, 3000)
	if err != nil {
		t.Fatal(err)
	}
	hc := previewClient(d, nil)
	host := strings.TrimSuffix(strings.TrimPrefix(ep.URLs.Host, "http://"), "/")

	t.Run("request and response pass unchanged", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, ep.URLs.Host+"echo?q=a%2Fb&r=1", strings.NewReader("payload"))
		req.Header.Set("X-Custom", "kept")
		req.Header.Set("Authorization", "Bearer app-token")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var echo struct {
			Method, Host, URL string
			Headers           map[string]string
			Bytes             int
		}
		if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil {
			t.Fatal(err)
		}
		if echo.Method != "PUT" || echo.Host != host || echo.URL != "/echo?q=a%2Fb&r=1" || echo.Bytes != 7 ||
			echo.Headers["x-custom"] != "kept" || echo.Headers["authorization"] != "Bearer app-token" ||
			echo.Headers["x-forwarded-host"] != host || echo.Headers["x-forwarded-for"] == "" {
			t.Errorf("app saw %+v", echo)
		}
		if resp.Header.Get("X-App") != "echo" {
			t.Errorf("response headers lost: %v", resp.Header)
		}
	})
	t.Run("status and redirects", func(t *testing.T) {
		st, body := get(t, hc, ep.URLs.Host+"status?code=418")
		if st != 418 || body != "status body" {
			t.Errorf("status: %d %q", st, body)
		}
		resp, err := hc.Get(ep.URLs.Host + "redirect")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 302 || resp.Header.Get("Location") != "/elsewhere" {
			t.Errorf("redirect followed or changed: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("SSE arrives as it is sent", func(t *testing.T) {
		resp, err := hc.Get(ep.URLs.Host + "sse")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("content type %q", ct)
		}
		sc := bufio.NewScanner(resp.Body)
		var events []string
		var firstAt time.Time
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				if len(events) == 0 {
					firstAt = time.Now()
				}
				events = append(events, data)
			}
		}
		if strings.Join(events, ",") != "first,tick 0,tick 1,tick 2" {
			t.Fatalf("events %q", events)
		}
		// The app spaces the ticks 400 ms apart: a buffered stream would
		// deliver the first event only at the end.
		if wait := time.Since(firstAt); wait < 800*time.Millisecond {
			t.Errorf("first event arrived only %v before the end: not streamed", wait)
		}
	})
	t.Run("large upload and downloads", func(t *testing.T) {
		const n = 64 << 20
		h := sha256.New()
		body := io.TeeReader(io.LimitReader(rand.Reader, n), h)
		req, _ := http.NewRequest(http.MethodPost, ep.URLs.Host+"echo", io.NopCloser(body)) // chunked: no length
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var echo struct {
			Bytes  int
			Sha256 string
		}
		err = json.NewDecoder(resp.Body).Decode(&echo)
		resp.Body.Close()
		if err != nil || echo.Bytes != n || echo.Sha256 != hex.EncodeToString(h.Sum(nil)) {
			t.Errorf("upload: app got %d bytes %s (%v), sent %d", echo.Bytes, echo.Sha256, err, n)
		}
		for _, q := range []string{"", "&chunked=1"} {
			resp, err := hc.Get(ep.URLs.Host + "big?bytes=" + fmt.Sprint(n) + q)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || got != n {
				t.Errorf("download%s: %d bytes, %v", q, got, err)
			}
		}
	})
	t.Run("WebSocket upgrade in every form", func(t *testing.T) {
		portBase, token := portFormURL(t, ep)
		forms := map[string]struct {
			url    string
			header http.Header
		}{
			"host": {ep.URLs.Host + "ws", nil},
			"path": {ep.URLs.Path + "ws", nil},
			"port": {portBase + "ws", http.Header{"Cookie": {portCookie(portBase, token).String()}}},
		}
		for name, f := range forms {
			t.Run(name, func(t *testing.T) {
				c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.url, "http"), &websocket.DialOptions{HTTPClient: hc, HTTPHeader: f.header})
				if err != nil {
					t.Fatal(err)
				}
				defer c.CloseNow()
				c.SetReadLimit(1 << 20)
				for _, msg := range []string{"hello", strings.Repeat("x", 200<<10)} {
					if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
						t.Fatal(err)
					}
					typ, got, err := c.Read(ctx)
					if err != nil || typ != websocket.MessageText || string(got) != msg {
						t.Fatalf("echo of %d bytes: %v %d bytes %v", len(msg), typ, len(got), err)
					}
				}
				if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
					t.Errorf("close: %v", err)
				}
			})
		}
	})
	t.Run("nothing listening is 502", func(t *testing.T) {
		ep, err := sb.ExposePort(ctx, 3999)
		if err != nil {
			t.Fatal(err)
		}
		st, body := get(t, hc, ep.URLs.Host)
		if st != 502 || !strings.Contains(body, api.CodePortNotListening) || !strings.Contains(body, "nothing is listening on port 3999") {
			t.Errorf("%d %s", st, body)
		}
	})
	t.Run("app on IPv6 loopback only", func(t *testing.T) {
		startApp(t, d, "proxy", 3001, "::1")
		ep, err := sb.ExposePort(ctx, 3001)
		if err != nil {
			t.Fatal(err)
		}
		if st, body := get(t, hc, ep.URLs.Host); st != 200 || !strings.Contains(body, "hello from the sandbox") {
			t.Errorf("%d %q", st, body)
		}
	})
	t.Run("preview traffic is activity", func(t *testing.T) {
		before, err := sb.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		get(t, hc, ep.URLs.Host)
		after, err := sb.Get(ctx)
		if err != nil || !after.LastActiveAt.After(before.LastActiveAt) {
			t.Errorf("last activity %v then %v (%v)", before.LastActiveAt, after.LastActiveAt, err)
		}
	})
}

func TestPreviewLifecycle(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("life")
	startApp(t, d, "life", 8000, "127.0.0.1")
	ep, err := sb.ExposePort(ctx, 8000)
	if err != nil {
		t.Fatal(err)
	}
	hc := previewClient(d, nil)
	portBase, token := portFormURL(t, ep)
	getPortForm := func() (int, string) {
		req, _ := http.NewRequest(http.MethodGet, portBase, nil)
		req.AddCookie(portCookie(portBase, token))
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error() // closed once the exposure ends
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	serving := func(when string) {
		t.Helper()
		for name, u := range map[string]string{"host": ep.URLs.Host, "path": ep.URLs.Path} {
			if st, _ := get(t, hc, u); st != 200 {
				t.Errorf("%s: %s form: %d", when, name, st)
			}
		}
		if st, _ := getPortForm(); st != 200 {
			t.Errorf("%s: port form: %d", when, st)
		}
	}
	gone := func(when string) {
		t.Helper()
		wantCode(t, hc, ep.URLs.Host, 410, api.CodePreviewGone)
		wantCode(t, hc, ep.URLs.Path, 410, api.CodePreviewGone)
	}
	serving("exposed")

	again, err := sb.ExposePort(ctx, 8000)
	if err != nil || again.URLs != ep.URLs {
		t.Fatalf("exposed again: %+v %v, want the same URLs %+v", again, err, ep.URLs)
	}
	if _, err := sb.ExposePort(ctx, 8000, client.WithPreviewToken("anothertoken1")); !errors.Is(err, client.ErrConflict) {
		t.Errorf("another token for an exposed port: %v, want CONFLICT", err)
	}

	// Unexposed: gone, in every form; exposed again: the same URLs serve.
	for range 2 {
		if err := sb.UnexposePort(ctx, 8000); err != nil {
			t.Fatal(err)
		}
	}
	gone("unexposed")
	if st, body := getPortForm(); st != 410 || !strings.Contains(body, api.CodePreviewGone) {
		t.Errorf("unexposed port form: %d %s", st, body)
	}
	if ports, err := sb.Ports(ctx); err != nil || len(ports) != 0 {
		t.Errorf("ports after unexpose: %+v %v", ports, err)
	}
	if again, err = sb.ExposePort(ctx, 8000); err != nil || again.URLs != ep.URLs {
		t.Fatalf("re-exposed: %+v %v, want the same URLs", again, err)
	}
	serving("re-exposed")

	// A daemon restart keeps the exposure: the sandbox is re-adopted.
	// (The harness restarts it on a new API port, which the host and
	// path forms carry; the token and the port form stay.)
	d.Restart()
	after, err := d.Client.Sandbox("life").Ports(ctx)
	if err != nil || len(after) != 1 {
		t.Fatalf("ports after restart: %+v %v", after, err)
	}
	if after[0].URLs.Port != ep.URLs.Port || !strings.Contains(after[0].URLs.Host, token) {
		t.Errorf("URLs changed across the restart: %+v, were %+v", after[0].URLs, ep.URLs)
	}
	ep, sb = &after[0], d.Client.Sandbox("life")
	serving("after a daemon restart")

	// Stopping ends the exposure: gone, and the sandbox stays stopped.
	if _, err := sb.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	gone("stopped")
	if st, body := getPortForm(); st != 410 || !strings.Contains(body, api.CodePreviewGone) {
		t.Errorf("port form after stop: %d %s, want 410 like the other forms", st, body)
	}
	if got, err := sb.Get(ctx); err != nil || got.Status != api.StatusStopped {
		t.Errorf("a preview request woke the sandbox: %+v %v", got, err)
	}
	// After a new start, the old URL stays gone; exposing gives a new one.
	startApp(t, d, "life", 8000, "127.0.0.1")
	gone("restarted sandbox")
	fresh, err := sb.ExposePort(ctx, 8000)
	if err != nil || fresh.URLs.Host == ep.URLs.Host {
		t.Fatalf("exposed after restart: %+v %v", fresh, err)
	}
	if st, _ := get(t, hc, fresh.URLs.Host); st != 200 {
		t.Errorf("new URL: %d", st)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	wantCode(t, hc, fresh.URLs.Host, 410, api.CodePreviewGone)
}

func TestExposeValidation(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	apiPort := 0
	fmt.Sscan(d.Addr[strings.LastIndex(d.Addr, ":")+1:], &apiPort)
	tests := []struct {
		name string
		req  api.ExposePortRequest
	}{
		{"zero", api.ExposePortRequest{Port: 0}},
		{"negative", api.ExposePortRequest{Port: -1}},
		{"too large", api.ExposePortRequest{Port: 65536}},
		{"the API port", api.ExposePortRequest{Port: apiPort}},
		{"upper-case token", api.ExposePortRequest{Port: 80, Token: "ABCDEFGHIJ"}},
		{"short token", api.ExposePortRequest{Port: 80, Token: "abc"}},
		{"token with dash", api.ExposePortRequest{Port: 80, Token: "abc-defghij"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []client.ExposeOption
			if tc.req.Token != "" {
				opts = append(opts, client.WithPreviewToken(tc.req.Token))
			}
			_, err := d.Client.Sandbox("v").ExposePort(ctx, tc.req.Port, opts...)
			var e *client.Error
			if !errors.As(err, &e) || e.Status != 400 || e.Code != api.CodeInvalidRequest || e.Message == "" {
				t.Errorf("err = %v, want 400 INVALID_REQUEST", err)
			}
		})
	}
	// Refused before anything was created.
	if _, err := d.Client.Sandbox("v").Get(ctx); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("a refused expose created the sandbox: %v", err)
	}
	if err := d.Client.Sandbox("v").UnexposePort(ctx, 70000); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("unexpose 70000: %v", err)
	}
	if _, err := d.Client.Sandbox("absent").Ports(ctx); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("ports of an absent sandbox: %v", err)
	}
}

func TestExposeCLI(t *testing.T) {
	d := StartDaemon(t)
	startApp(t, d, "cli", 8080, "127.0.0.1")
	out, errOut, code := d.CLI(nil, "expose", "cli", "8080", "--name", "web")
	if code != 0 || !strings.HasPrefix(out, "http://8080-cli-") || strings.Count(out, "\n") != 1 || !strings.Contains(errOut, "/preview/cli/8080/") {
		t.Fatalf("sbx expose: %d %q %q", code, out, errOut)
	}
	if st, body := get(t, previewClient(d, nil), strings.TrimSpace(out)); st != 200 || !strings.Contains(body, "hello from the sandbox") {
		t.Errorf("printed URL: %d %q", st, body)
	}
	if out, _, code := d.CLI(nil, "ports", "cli"); code != 0 || !strings.Contains(out, "8080") || !strings.Contains(out, "web") {
		t.Errorf("sbx ports: %d %q", code, out)
	}
	if _, errOut, code := d.CLI(nil, "expose", "cli", "http"); code == 0 || !strings.Contains(errOut, "1 to 65535") {
		t.Errorf("sbx expose with a bad port: %d %q", code, errOut)
	}
	for range 2 {
		if out, errOut, code := d.CLI(nil, "unexpose", "cli", "8080"); code != 0 {
			t.Errorf("sbx unexpose: %d %q %q", code, out, errOut)
		}
	}
	if out, _, _ := d.CLI(nil, "ports", "cli", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("ports after unexpose: %q", out)
	}
}
