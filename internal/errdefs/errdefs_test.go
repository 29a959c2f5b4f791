package errdefs

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/api"
)

// TestTable checks the one mapping: each sentinel once, with an error
// status and a code of its own, and found through any wrapping.
func TestTable(t *testing.T) {
	seenErr := map[error]bool{}
	seenCode := map[string]error{}
	for _, row := range table {
		if seenErr[row.err] {
			t.Errorf("%v is mapped twice", row.err)
		}
		seenErr[row.err] = true
		if prev, ok := seenCode[row.code]; ok {
			t.Errorf("code %s is used by %v and %v", row.code, prev, row.err)
		}
		seenCode[row.code] = row.err
		if row.status < 400 || row.status > 599 {
			t.Errorf("%v has status %d", row.err, row.status)
		}
		wrapped := fmt.Errorf("outer: %w", fmt.Errorf("what to fix: %w", row.err))
		status, body := Classify(wrapped)
		if status != row.status || body.Code != row.code || body.Message != wrapped.Error() {
			t.Errorf("Classify(%v) = %d %+v, want %d %s with the whole message", wrapped, status, body, row.status, row.code)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"unknown is internal", errors.New("disk on fire"), 500, api.CodeInternal},
		{"coded by the agent, kept", FromAPI(409, api.Error{Code: api.CodeSessionTerminated, Message: "bye"}), 409, api.CodeSessionTerminated},
		{"coded, wrapped", fmt.Errorf("forwarding: %w", FromAPI(404, api.Error{Code: api.CodeFileNotFound, Message: "/x"})), 404, api.CodeFileNotFound},
		// An error matching two sentinels gets the one listed first in
		// the table, whatever the order of wrapping.
		{"two sentinels", errors.Join(ErrNoSpace, ErrInvalidPath), firstStatus(ErrInvalidPath, ErrNoSpace), firstCode(ErrInvalidPath, ErrNoSpace)},
	}
	for _, tc := range tests {
		status, body := Classify(tc.err)
		if status != tc.status || body.Code != tc.code {
			t.Errorf("%s: Classify = %d %s, want %d %s", tc.name, status, body.Code, tc.status, tc.code)
		}
	}
}

func firstCode(errs ...error) string {
	for _, row := range table {
		for _, e := range errs {
			if row.err == e {
				return row.code
			}
		}
	}
	return ""
}

func firstStatus(errs ...error) int {
	for _, row := range table {
		for _, e := range errs {
			if row.err == e {
				return row.status
			}
		}
	}
	return 0
}

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, fmt.Errorf("%w: /workspace/x: no such file", ErrFileNotFound))
	if rec.Code != http.StatusNotFound || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var e api.Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != api.CodeFileNotFound || !strings.Contains(e.Message, "/workspace/x") {
		t.Errorf("body %s (%v)", rec.Body, err)
	}
}

func TestDecodeJSON(t *testing.T) {
	type req struct {
		A int `json:"a"`
	}
	tests := []struct {
		body string
		ok   bool
		want int
	}{
		{``, true, 0},
		{`{"a":3}`, true, 3},
		{`{"a":3,"b":1}`, false, 0},
		{`{"a":3} {"a":4}`, false, 0},
		{`{"a":"x"}`, false, 0},
		{`[`, false, 0},
	}
	for _, tc := range tests {
		var v req
		r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
		err := DecodeJSON(r, &v)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidArgument)) || (tc.ok && v.A != tc.want) {
			t.Errorf("DecodeJSON(%q) = %+v, %v", tc.body, v, err)
		}
	}
}
