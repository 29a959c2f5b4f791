package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/internal/sandbox"
)

// fetchOpenAPI gets the document as a client does and decodes it.
func fetchOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	ts := newTestServer(t, "s3cret")
	req, _ := http.NewRequest("GET", ts.URL+"/v1/openapi.json", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/openapi.json: %s", resp.Status)
	}
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("document is not valid JSON: %v", err)
	}
	return doc
}

// obj walks doc along keys, failing the test where a key is missing.
func obj(t *testing.T, doc map[string]any, keys ...string) map[string]any {
	t.Helper()
	m := doc
	for i, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			t.Fatalf("document lacks %s", strings.Join(keys[:i+1], " > "))
		}
		m = next
	}
	return m
}

// TestOpenAPIOperations checks the document's shape for every operation:
// each route present, unique operation ids, real statuses, and a request
// body wherever a body is sent, raw uploads included.
func TestOpenAPIOperations(t *testing.T) {
	doc := fetchOpenAPI(t)
	paths := obj(t, doc, "paths")
	s := New(Config{Manager: sandbox.New(sandbox.Config{}), Version: "test"})
	for _, rt := range append(s.routes(), s.unmuxedRoutes()...) {
		methods := []string{rt.method}
		if rt.method == anyMethod {
			methods = anyMethods
		}
		for _, m := range methods {
			if _, ok := obj(t, paths, strings.ReplaceAll(rt.pattern, "...}", "}"))[strings.ToLower(m)]; !ok {
				t.Errorf("%s %s missing from the document", m, rt.pattern)
			}
		}
	}
	// The POST routes that take no body at all.
	bodiless := []string{"/v1/sandboxes/{id}/stop", "/v1/sandboxes/{id}/mounts/sync"}
	ids := map[string]string{}
	for p, ops := range paths {
		for m, o := range ops.(map[string]any) {
			op := o.(map[string]any)
			where := strings.ToUpper(m) + " " + p
			id, _ := op["operationId"].(string)
			if prev, dup := ids[id]; dup || id == "" {
				t.Errorf("%s: operationId %q (also %s)", where, id, prev)
			}
			ids[id] = where
			for code := range obj(t, op, "responses") {
				if n, err := strconv.Atoi(code); code != "default" && (err != nil || http.StatusText(n) == "") {
					t.Errorf("%s: response %q is not an HTTP status", where, code)
				}
			}
			if (m == "post" || m == "put" || m == "patch") && !slices.Contains(bodiless, p) {
				if body, _ := op["requestBody"].(map[string]any); body == nil || len(body["content"].(map[string]any)) == 0 {
					t.Errorf("%s has no documented request body", where)
				}
			}
		}
	}
}

// TestOpenAPIDocumentsWireForms checks the parts of the API that are not
// plain JSON in, one status out.
func TestOpenAPIDocumentsWireForms(t *testing.T) {
	doc := fetchOpenAPI(t)
	op := func(t *testing.T, method, path string) map[string]any {
		return obj(t, doc, "paths", path, method)
	}
	hasParam := func(t *testing.T, o map[string]any, in, name string) map[string]any {
		t.Helper()
		ps, _ := o["parameters"].([]any)
		for _, p := range ps {
			if p := p.(map[string]any); p["in"] == in && p["name"] == name {
				return p
			}
		}
		t.Fatalf("no %s parameter %s", in, name)
		return nil
	}
	tests := []struct {
		name, method, path string
		check              func(t *testing.T, o map[string]any)
	}{
		{"create answers 201 or 200", "put", "/v1/sandboxes/{id}", func(t *testing.T, o map[string]any) {
			for _, code := range []string{"200", "201"} {
				if obj(t, o, "responses", code, "content", "application/json", "schema")["$ref"] != "#/components/schemas/Sandbox" {
					t.Errorf("%s is not a Sandbox", code)
				}
			}
		}},
		{"exec streams events", "post", "/v1/sandboxes/{id}/exec", func(t *testing.T, o map[string]any) {
			obj(t, o, "responses", "200", "content", "application/json")
			obj(t, o, "responses", "200", "content", "text/event-stream")
		}},
		{"code streams events", "post", "/v1/sandboxes/{id}/code", func(t *testing.T, o map[string]any) {
			obj(t, o, "responses", "200", "content", "text/event-stream")
		}},
		{"logs follow streams events", "get", "/v1/sandboxes/{id}/processes/{pid}/logs", func(t *testing.T, o map[string]any) {
			obj(t, o, "responses", "200", "content", "application/json")
			obj(t, o, "responses", "200", "content", "text/event-stream")
			if d := obj(t, o, "responses", "200")["description"].(string); !strings.Contains(d, "follow=1") {
				t.Errorf("200 description %q does not say how to ask for events", d)
			}
		}},
		{"pty upgrades to a WebSocket", "get", "/v1/sandboxes/{id}/pty", func(t *testing.T, o map[string]any) {
			rs := obj(t, o, "responses")
			if _, ok := rs["101"]; !ok {
				t.Error("no 101 Switching Protocols")
			}
			if _, ok := rs["200"]; ok {
				t.Error("documents a 200 it never sends")
			}
			if p := hasParam(t, o, "header", "Upgrade"); p["required"] != true || obj(t, p, "schema")["const"] != "websocket" {
				t.Errorf("Upgrade header %v", p)
			}
		}},
		{"file upload is raw bytes", "put", "/v1/sandboxes/{id}/files/{path}", func(t *testing.T, o map[string]any) {
			obj(t, o, "requestBody", "content", "application/octet-stream")
			obj(t, o, "responses", "201", "content", "application/json")
			obj(t, o, "responses", "200", "content", "application/json")
		}},
		{"file read takes Range", "get", "/v1/sandboxes/{id}/files/{path}", func(t *testing.T, o map[string]any) {
			hasParam(t, o, "header", "Range")
			obj(t, o, "responses", "206")
		}},
		{"tar upload is a raw tar stream", "put", "/v1/sandboxes/{id}/fs/tar", func(t *testing.T, o map[string]any) {
			obj(t, o, "requestBody", "content", "application/x-tar")
			obj(t, o, "requestBody", "content", "application/gzip")
			if _, ok := obj(t, o, "requestBody", "content")["application/json"]; ok {
				t.Error("tar upload documented as JSON")
			}
			if p := hasParam(t, o, "query", "anySymlinkTarget"); obj(t, p, "schema")["type"] != "boolean" {
				t.Errorf("anySymlinkTarget %v", p)
			}
		}},
		{"path preview takes any method without a bearer token", "delete", "/preview/{id}/{port}/{token}/{path}", func(t *testing.T, o map[string]any) {
			if sec, ok := o["security"].([]any); !ok || len(sec) != 0 {
				t.Errorf("security %v, want none", o["security"])
			}
			for _, name := range []string{"id", "port", "token", "path"} {
				hasParam(t, o, "path", name)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, op(t, tc.method, tc.path)) })
	}
}
