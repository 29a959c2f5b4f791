package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

func TestParseHost(t *testing.T) {
	p := NewPreviews(nil, PreviewConfig{Domain: "localhost"}, nil)
	tests := []struct {
		host      string
		id, token string
		port      int
		ok        bool
	}{
		{"8080-box-abc123.localhost:7070", "box", "abc123", 8080, true},
		{"8080-box-abc123.localhost", "box", "abc123", 8080, true},
		{"8080-box-abc123.localhost.", "box", "abc123", 8080, true},
		{"8080-My-Box-ABC123.LOCALHOST:7070", "my-box", "abc123", 8080, true}, // host names are case-insensitive
		{"1-a-b.localhost", "a", "b", 1, true},
		{"65535-x-y-z-tok.localhost", "x-y-z", "tok", 65535, true},
		{"localhost:7070", "", "", 0, false},           // the API itself
		{"api.localhost", "", "", 0, false},            // not the preview shape
		{"8080-box.localhost", "", "", 0, false},       // no token
		{"8080--abc.localhost", "", "", 0, false},      // no id
		{"8080-box-.localhost", "", "", 0, false},      // empty token
		{"70000-box-abc.localhost", "", "", 0, false},  // port out of range
		{"0-box-abc.localhost", "", "", 0, false},      // port out of range
		{"80a-box-abc.localhost", "", "", 0, false},    // port not a number
		{"8080-box-ab_c.localhost", "", "", 0, false},  // token outside [a-z0-9]
		{"8080--box-abc.localhost", "", "", 0, false},  // id starting with '-'
		{"x.8080-box-abc.localhost", "", "", 0, false}, // two labels
		{"8080-box-abc.example.com", "", "", 0, false}, // another domain
		{"8080-box-abcxlocalhost", "", "", 0, false},   // suffix without a dot
		{"[::1]:7070", "", "", 0, false},
	}
	for _, tc := range tests {
		id, port, token, ok := p.parseHost(tc.host)
		if id != tc.id || port != tc.port || token != tc.token || ok != tc.ok {
			t.Errorf("parseHost(%q) = %q %d %q %v, want %q %d %q %v", tc.host, id, port, token, ok, tc.id, tc.port, tc.token, tc.ok)
		}
	}
}

func TestDropPreviewCookies(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{"sbx_preview_1=tok"}, ""},
		{[]string{"a=1; sbx_preview_1=tok; b=\"two words\""}, "a=1; b=\"two words\""},
		{[]string{"a=1", "sbx_preview_1=tok", "c=3"}, "a=1; c=3"},
		// Every port-form listener's cookie, not only the one in use.
		{[]string{"sbx_preview_10=x; sbx_preview_1=tok; app=y"}, "app=y"},
	}
	for _, tc := range tests {
		h := http.Header{"Cookie": tc.in}
		dropPreviewCookies(h)
		if got := h.Get("Cookie"); got != tc.want || len(h.Values("Cookie")) > 1 {
			t.Errorf("dropPreviewCookies(%q) = %q, want %q", tc.in, h.Values("Cookie"), tc.want)
		}
	}
}

func TestTakeQueryParam(t *testing.T) {
	tests := []struct {
		raw, val, rest string
		found          bool
	}{
		{"", "", "", false},
		{"sbx_preview_token=abc", "abc", "", true},
		{"a=1&sbx_preview_token=abc&b=%2F+x", "abc", "a=1&b=%2F+x", true},
		// An app's own token parameters are the app's.
		{"token=app&csrf_token=x", "", "token=app&csrf_token=x", false},
		{"my_sbx_preview_token=x&q", "", "my_sbx_preview_token=x&q", false},
	}
	for _, tc := range tests {
		val, rest, found := takeQueryParam(tc.raw, previewTokenParam)
		if val != tc.val || rest != tc.rest || found != tc.found {
			t.Errorf("takeQueryParam(%q) = %q %q %v, want %q %q %v", tc.raw, val, rest, found, tc.val, tc.rest, tc.found)
		}
	}
}

// answer sends req to h and returns the status and error code.
func answer(t *testing.T, h http.Handler, req *http.Request) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	var e api.Error
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &e)
	return resp, e.Code
}

func TestPreviewRouting(t *testing.T) {
	p, s := newTestPreviews(t, t.TempDir(), "")
	live := mustRecord(t, p, "box", api.ExposePortRequest{Port: 8080})
	off := mustRecord(t, p, "box", api.ExposePortRequest{Port: 9090})
	if err := p.unexpose(context.Background(), "box", 9090); err != nil {
		t.Fatal(err)
	}
	host := func(port, token string) string { return port + "-box-" + token + ".preview.example.test:8443" }
	tests := []struct {
		name, host, path string
		status           int
		code             string
	}{
		// Valid tokens pass the check and then find the sandbox stopped:
		// a preview never wakes it.
		{"host form, sandbox not running", host("8080", live.token), "/x", 410, api.CodePreviewGone},
		{"path form, sandbox not running", "sbx.example.test", "/preview/box/8080/" + live.token + "/x", 410, api.CodePreviewGone},
		{"host form, unexposed", host("9090", off.token), "/", 410, api.CodePreviewGone},
		{"path form, unexposed", "sbx.example.test", "/preview/box/9090/" + off.token + "/", 410, api.CodePreviewGone},
		{"host form, wrong token", host("8080", "wrongtoken"), "/", 404, api.CodePreviewNotFound},
		{"host form, token of another port", host("8080", off.token), "/", 404, api.CodePreviewNotFound},
		{"host form, unknown sandbox", "8080-nobox-" + live.token + ".preview.example.test", "/", 404, api.CodePreviewNotFound},
		{"path form, wrong token", "sbx.example.test", "/preview/box/8080/wrongtoken/", 404, api.CodePreviewNotFound},
		{"path form, too short", "sbx.example.test", "/preview/box/8080", 404, api.CodePreviewNotFound},
		{"path form, bad id", "sbx.example.test", "/preview/Box/8080/x/", 404, api.CodePreviewNotFound},
		{"path form, no slash", "sbx.example.test", "/preview/box/8080/" + live.token, 308, ""},
		{"API host", "sbx.example.test", "/healthz", 200, ""},
		{"API under a non-preview name", "api.preview.example.test", "/healthz", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://"+tc.host+tc.path+"?q=1", nil)
			resp, code := answer(t, s, req)
			if resp.StatusCode != tc.status || code != tc.code {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, code, tc.status, tc.code)
			}
			if tc.status == 308 && resp.Header.Get("Location") != tc.path+"/?q=1" {
				t.Errorf("Location %q", resp.Header.Get("Location"))
			}
		})
	}
	if _, err := s.cfg.Manager.Get(context.Background(), "box"); !errors.Is(err, errdefs.ErrSandboxNotFound) {
		t.Errorf("preview requests created the sandbox: %v", err)
	}
}

func TestPortFormCookie(t *testing.T) {
	p, _ := newTestPreviews(t, t.TempDir(), "127.0.0.1")
	e := mustRecord(t, p, "box", api.ExposePortRequest{Port: 8080})
	v := p.view(e)
	base, _ := url.Parse(v.URLs.Port)
	if base.Query().Get(previewTokenParam) != e.token {
		t.Fatalf("port URL %s", v.URLs.Port)
	}
	base.RawQuery = ""
	cookie := "sbx_preview_" + base.Port()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, u string, cookies ...*http.Cookie) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, u, strings.NewReader("body"))
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ae api.Error
		_ = json.NewDecoder(resp.Body).Decode(&ae)
		return resp, ae.Code
	}

	// First visit: the token moves into a cookie, the URL loses it and
	// keeps the rest of the query.
	resp, _ := do("GET", base.String()+"app/page?a=1&sbx_preview_token="+e.token+"&b=2")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app/page?a=1&b=2" {
		t.Fatalf("first visit: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var set *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == cookie {
			set = c
		}
	}
	if set == nil || set.Value != e.token || !set.HttpOnly || set.Path != "/" || set.SameSite != http.SameSiteLaxMode {
		t.Fatalf("cookie %+v", resp.Cookies())
	}
	tests := []struct {
		name    string
		method  string
		query   string
		cookies []*http.Cookie
		status  int
		code    string
	}{
		// 410: the token was right, and the sandbox is not running here.
		{"cookie", "GET", "", []*http.Cookie{set}, 410, api.CodePreviewGone},
		{"app's own token parameters", "GET", "?csrf_token=abc&token=app", []*http.Cookie{set}, 410, api.CodePreviewGone},
		{"token on a POST is used at once", "POST", "?sbx_preview_token=" + e.token, nil, 410, api.CodePreviewGone},
		{"no token", "GET", "", nil, 404, api.CodePreviewNotFound},
		{"wrong token", "GET", "?sbx_preview_token=aaaaaaaaaaaaaaaa", nil, 404, api.CodePreviewNotFound},
		{"wrong cookie", "GET", "", []*http.Cookie{{Name: cookie, Value: "aaaaaaaaaaaaaaaa"}}, 404, api.CodePreviewNotFound},
		{"cookie of another listener", "GET", "", []*http.Cookie{{Name: "sbx_preview_1", Value: e.token}}, 404, api.CodePreviewNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, code := do(tc.method, base.String()+tc.query, tc.cookies...)
			if resp.StatusCode != tc.status || code != tc.code {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, code, tc.status, tc.code)
			}
		})
	}

	// Unexposed: the listener stays (for re-exposure) and answers 410.
	if err := p.unexpose(context.Background(), "box", 8080); err != nil {
		t.Fatal(err)
	}
	if resp, code := do("GET", base.String(), set); resp.StatusCode != 410 || code != api.CodePreviewGone {
		t.Errorf("unexposed: %d %s", resp.StatusCode, code)
	}
	// Stopped: it answers 410 like the other forms for a while, then
	// closes.
	p.cfg.PortLinger = 300 * time.Millisecond
	p.SandboxStopped("box")
	if resp, code := do("GET", base.String(), set); resp.StatusCode != 410 || code != api.CodePreviewGone {
		t.Errorf("right after the sandbox stopped: %d %s, want 410 %s", resp.StatusCode, code, api.CodePreviewGone)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := hc.Get(base.String())
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still open long after the sandbox stopped")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
