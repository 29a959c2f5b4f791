package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/sandbox"
	"github.com/sbx-dev/sbx/internal/store"
)

func newTestServer(t *testing.T, token string) *httptest.Server {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// No backend: these tests stay above the sandbox layer.
	m := sandbox.New(sandbox.Config{Store: st})
	ts := httptest.NewServer(New(Config{Manager: m, Token: token, Version: "test"}))
	t.Cleanup(ts.Close)
	return ts
}

func TestAuthAndRouting(t *testing.T) {
	ts := newTestServer(t, "s3cret")
	tests := []struct {
		name, method, path, auth string
		status                   int
		code                     string
	}{
		{"health needs no token", "GET", "/healthz", "", 200, ""},
		{"list without token", "GET", "/v1/sandboxes", "", 401, api.CodeUnauthorized},
		{"list with wrong scheme", "GET", "/v1/sandboxes", "Basic s3cret", 401, api.CodeUnauthorized},
		{"list with token prefix", "GET", "/v1/sandboxes", "Bearer s3cre", 401, api.CodeUnauthorized},
		{"list", "GET", "/v1/sandboxes", "Bearer s3cret", 200, ""},
		{"metrics need token", "GET", "/metrics", "", 401, api.CodeUnauthorized},
		{"openapi", "GET", "/v1/openapi.json", "Bearer s3cret", 200, ""},
		{"unknown path", "GET", "/v2/x", "Bearer s3cret", 404, api.CodeNotFound},
		{"wrong method", "DELETE", "/v1/sandboxes", "Bearer s3cret", 405, api.CodeMethodNotAllowed},
		{"bad id before anything", "POST", "/v1/sandboxes/UP/exec", "Bearer s3cret", 400, api.CodeInvalidSandboxID},
		{"dot-dot never redirects", "DELETE", "/v1/sandboxes/a/stop/../../b", "Bearer s3cret", 400, api.CodeInvalidRequest},
		{"double slash never redirects", "DELETE", "/v1/sandboxes//b", "Bearer s3cret", 400, api.CodeInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(`{"command":"true"}`))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.code == "" {
				return
			}
			var e api.Error
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Code != tc.code || e.Message == "" {
				t.Fatalf("body %+v %v, want code %s", e, err, tc.code)
			}
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	s := New(Config{Manager: sandbox.New(sandbox.Config{}), Version: "test"})
	doc := s.buildOpenAPI()
	paths := doc["paths"].(map[string]any)
	for _, rt := range s.routes() {
		if rt.doc.summary == "" {
			t.Errorf("route %s %s has no documentation entry", rt.method, rt.pattern)
		}
		ops, _ := paths[strings.ReplaceAll(rt.pattern, "...}", "}")].(map[string]any)
		op, _ := ops[strings.ToLower(rt.method)].(map[string]any)
		if op == nil {
			t.Errorf("route %s %s missing from the document", rt.method, rt.pattern)
			continue
		}
		declared := 0
		params, _ := op["parameters"].([]any)
		for _, p := range params {
			if p.(map[string]any)["in"] == "path" {
				declared++
			}
		}
		if want := strings.Count(rt.pattern, "{"); declared != want {
			t.Errorf("route %s %s declares %d path parameters, want %d", rt.method, rt.pattern, declared, want)
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"ExecRequest"`, `"timeoutMs"`, `"stdoutTruncated"`, `"sleepAfter"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("document lacks %s", want)
		}
	}
}

func TestNoAuthWhenTokenEmpty(t *testing.T) {
	ts := newTestServer(t, "")
	resp, err := http.Get(ts.URL + "/v1/sandboxes")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"sandboxes"`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}
