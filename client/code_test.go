package client

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/api"
)

func TestRunCodeStream(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    []string
		wantErr string // code of the *Error, or "EOF" for a stream cut short
	}{
		{"complete run",
			"event: stdout\ndata: {\"text\":\"hi\\n\"}\n\n" +
				"event: result\ndata: {\"text\":\"42\",\"isMainResult\":true}\n\n" +
				"event: error\ndata: {\"name\":\"ValueError\",\"message\":\"x\",\"traceback\":[]}\n\n" +
				"event: complete\ndata: {\"context\":\"default-python\",\"executionCount\":3,\"durationMs\":1}\n\n",
			[]string{"stdout:hi\n", "result:42", "error:ValueError", "complete:3"}, ""},
		{"sandbox failure", "event: stderr\ndata: {\"text\":\"e\"}\n\nevent: error\ndata: {\"code\":\"SANDBOX_UNAVAILABLE\",\"message\":\"gone\"}\n\n",
			[]string{"stderr:e"}, api.CodeSandboxUnavailable},
		{"cut short", "event: stdout\ndata: {\"text\":\"a\"}\n\n", []string{"stdout:a"}, "EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Accept") != "text/event-stream" || r.URL.Path != "/v1/sandboxes/sb/code" {
					http.Error(w, "bad request", 400)
					return
				}
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c, _ := New(WithURL(srv.URL))
			var got []string
			var gotErr error
			for ev, err := range c.Sandbox("sb").RunCodeStream(t.Context(), api.RunCodeRequest{Code: "x"}) {
				if err != nil {
					gotErr = err
					break
				}
				switch {
				case ev.Result != nil:
					got = append(got, "result:"+ev.Result.Text)
				case ev.Error != nil:
					got = append(got, "error:"+ev.Error.Name)
				case ev.Complete != nil:
					got = append(got, fmt.Sprintf("complete:%d", ev.Complete.ExecutionCount))
				default:
					got = append(got, ev.Type+":"+ev.Text)
				}
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("events %q, want %q", got, tc.want)
			}
			var e *Error
			switch {
			case tc.wantErr == "" && gotErr != nil:
				t.Errorf("error %v", gotErr)
			case tc.wantErr == "EOF" && !errors.Is(gotErr, io.ErrUnexpectedEOF):
				t.Errorf("error %v, want unexpected EOF", gotErr)
			case tc.wantErr != "" && tc.wantErr != "EOF" && (!errors.As(gotErr, &e) || e.Code != tc.wantErr):
				t.Errorf("error %v, want code %s", gotErr, tc.wantErr)
			}
		})
	}
}

func TestIsInterpreterNotAvailable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"code":"INTERPRETER_NOT_AVAILABLE","message":"no IPython"}`)
	}))
	defer srv.Close()
	c, _ := New(WithURL(srv.URL))
	_, err := c.Sandbox("sb").CreateCodeContext(t.Context(), api.CreateCodeContextRequest{Language: "python"})
	if !IsInterpreterNotAvailable(err) || !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("got %v", err)
	}
	if IsInterpreterNotAvailable(errors.New("other")) {
		t.Error("plain error matched")
	}
}
