package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

func TestErrorsMapToSentinels(t *testing.T) {
	tests := []struct {
		status int
		code   string
		want   error
	}{
		{404, api.CodeSandboxNotFound, ErrNotFound},
		{400, api.CodeInvalidSandboxID, ErrInvalidArgument},
		{401, api.CodeUnauthorized, ErrUnauthorized},
		{409, api.CodeConflict, ErrConflict},
		{429, api.CodeCapacityExceeded, ErrCapacity},
		{503, api.CodeSandboxUnavailable, ErrUnavailable},
	}
	for _, tc := range tests {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer tok" {
				t.Errorf("token not sent: %q", r.Header.Get("Authorization"))
			}
			errdefs.WriteJSON(w, tc.status, api.Error{Code: tc.code, Message: "because"})
		}))
		c, err := New(WithURL(ts.URL), WithToken("tok"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Sandbox("x").Exec(context.Background(), "true")
		var apiErr *Error
		if !errors.Is(err, tc.want) || !errors.As(err, &apiErr) || apiErr.Code != tc.code || apiErr.Message != "because" {
			t.Errorf("%d %s: got %v", tc.status, tc.code, err)
		}
		ts.Close()
	}
}

func TestEnvironmentDefaults(t *testing.T) {
	t.Setenv("SBX_URL", "http://example.invalid:1/")
	t.Setenv("SBX_TOKEN", "from-env")
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if c.URL() != "http://example.invalid:1" || c.token != "from-env" {
		t.Fatalf("%s %s", c.URL(), c.token)
	}
	if _, err := New(WithURL("ftp://x")); err == nil {
		t.Fatal("non-HTTP URL accepted")
	}
}
