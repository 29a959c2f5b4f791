package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/api"
)

// TestCodeRequestsValidatedFirst checks that bad code requests are refused
// before any sandbox is created or woken.
func TestCodeRequestsValidatedFirst(t *testing.T) {
	ts := newTestServer(t, "")
	tests := []struct {
		name, method, path, body, code, mention string
	}{
		{"unknown language", "POST", "/v1/sandboxes/demo/contexts", `{"language":"ruby"}`, api.CodeInvalidRequest, "python, javascript, typescript"},
		{"no language", "POST", "/v1/sandboxes/demo/contexts", `{}`, api.CodeInvalidRequest, "language"},
		{"bad env", "POST", "/v1/sandboxes/demo/contexts", `{"language":"python","env":{"A=B":"x"}}`, api.CodeInvalidRequest, "A=B"},
		{"unknown field", "POST", "/v1/sandboxes/demo/contexts", `{"language":"python","lang":"x"}`, api.CodeInvalidRequest, "lang"},
		{"empty code", "POST", "/v1/sandboxes/demo/code", `{"code":""}`, api.CodeInvalidRequest, "code is empty"},
		{"negative timeout", "POST", "/v1/sandboxes/demo/code", `{"code":"1","timeoutMs":-5}`, api.CodeInvalidRequest, "timeoutMs"},
		{"bad context id in run", "POST", "/v1/sandboxes/demo/code", `{"code":"1","context":"a b"}`, api.CodeInvalidRequest, "context id"},
		{"bad context id in path", "DELETE", "/v1/sandboxes/demo/contexts/a%20b", ``, api.CodeInvalidRequest, "context id"},
		{"bad sandbox id", "POST", "/v1/sandboxes/UP/code", `{"code":"1"}`, api.CodeInvalidSandboxID, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e api.Error
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadRequest || e.Code != tc.code || !strings.Contains(e.Message, tc.mention) {
				t.Errorf("got %d %+v, want 400 %s mentioning %q", resp.StatusCode, e, tc.code, tc.mention)
			}
		})
	}
	resp, err := http.Get(ts.URL + "/v1/sandboxes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list api.SandboxList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Sandboxes) != 0 {
		t.Errorf("sandboxes after refused requests: %+v %v", list, err)
	}
}
