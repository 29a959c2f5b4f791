package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sbx-dev/sbx/api"
)

// Code interpreter: stateful python, javascript and typescript contexts.
//
//	sb := c.Sandbox("notebook")
//	sb.Create(ctx, &api.CreateSandboxRequest{Image: "python"})
//	cc, _ := sb.CreateCodeContext(ctx, api.CreateCodeContextRequest{Language: api.LanguagePython})
//	sb.RunCode(ctx, "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})", InContext(cc.ID))
//	res, _ := sb.RunCode(ctx, "df", InContext(cc.ID))
//	fmt.Println(res.Results[0].HTML) // <table …

// CreateCodeContext starts a new code context. When the sandbox's image
// lacks the language the error is an *Error with Code
// api.CodeInterpreterNotAvailable.
func (s *Sandbox) CreateCodeContext(ctx context.Context, req api.CreateCodeContextRequest) (*api.CodeContext, error) {
	var cc api.CodeContext
	if err := s.c.do(ctx, http.MethodPost, s.path("/contexts"), req, &cc); err != nil {
		return nil, err
	}
	return &cc, nil
}

// CodeContexts lists the sandbox's code contexts, oldest first.
func (s *Sandbox) CodeContexts(ctx context.Context) ([]api.CodeContext, error) {
	var l api.CodeContextList
	if err := s.c.do(ctx, http.MethodGet, s.path("/contexts"), nil, &l); err != nil {
		return nil, err
	}
	return l.Contexts, nil
}

// CodeContext returns one code context; ErrNotFound if there is none.
func (s *Sandbox) CodeContext(ctx context.Context, id string) (*api.CodeContext, error) {
	var cc api.CodeContext
	if err := s.c.do(ctx, http.MethodGet, s.path("/contexts/"+url.PathEscape(id)), nil, &cc); err != nil {
		return nil, err
	}
	return &cc, nil
}

// DeleteCodeContext stops a code context's interpreter and forgets it.
func (s *Sandbox) DeleteCodeContext(ctx context.Context, id string) error {
	return s.c.do(ctx, http.MethodDelete, s.path("/contexts/"+url.PathEscape(id)), nil, nil)
}

// CodeOption adjusts one RunCode call.
type CodeOption func(*api.RunCodeRequest)

// InContext runs the code in the code context id.
func InContext(id string) CodeOption { return func(r *api.RunCodeRequest) { r.Context = id } }

// InLanguage runs the code in the default context of lang (python,
// javascript, typescript).
func InLanguage(lang string) CodeOption { return func(r *api.RunCodeRequest) { r.Language = lang } }

// CodeTimeout interrupts the run after d; the context stays usable.
func CodeTimeout(d time.Duration) CodeOption {
	return func(r *api.RunCodeRequest) { r.TimeoutMs = max(d.Milliseconds(), 1) }
}

// RunCode runs code and returns its results once it has finished. An error
// raised by the code is in the result's Error, not returned.
func (s *Sandbox) RunCode(ctx context.Context, code string, opts ...CodeOption) (*api.RunCodeResult, error) {
	req := api.RunCodeRequest{Code: code}
	for _, o := range opts {
		o(&req)
	}
	return s.RunCodeRequest(ctx, req)
}

// RunCodeRequest is RunCode with a full request.
func (s *Sandbox) RunCodeRequest(ctx context.Context, req api.RunCodeRequest) (*api.RunCodeResult, error) {
	var res api.RunCodeResult
	if err := s.c.do(ctx, http.MethodPost, s.path("/code"), req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// CodeEvent is one event of a streaming run. Exactly one of its fields
// besides Type is set: Text for stdout and stderr, Result, Error (raised by
// the code) or Complete, which is always the last event.
type CodeEvent struct {
	Type     string // api.CodeEventStdout, …
	Text     string
	Result   *api.CodeResult
	Error    *api.CodeError
	Complete *api.CodeComplete
}

// RunCodeStream runs code and yields its events as they happen. The
// sequence ends after the complete event, or with an error (the request
// failed, or the sandbox failed mid-run); stopping the iteration early
// cancels the request, which interrupts the code.
func (s *Sandbox) RunCodeStream(ctx context.Context, req api.RunCodeRequest) iter.Seq2[CodeEvent, error] {
	return func(yield func(CodeEvent, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		body, err := json.Marshal(req)
		if err != nil {
			yield(CodeEvent{}, err)
			return
		}
		hr, err := s.c.newRequest(ctx, http.MethodPost, s.path("/code"), bytes.NewReader(body))
		if err != nil {
			yield(CodeEvent{}, err)
			return
		}
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("Accept", "text/event-stream")
		resp, err := s.c.hc.Do(hr)
		if err != nil {
			yield(CodeEvent{}, fmt.Errorf("sbx: %w (is sbxd running at %s?)", err, s.c.base))
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 300 {
			yield(CodeEvent{}, decodeError(resp))
			return
		}
		for ev, err := range readCodeEvents(resp.Body) {
			if !yield(ev, err) || err != nil || ev.Type == api.CodeEventComplete {
				return
			}
		}
		yield(CodeEvent{}, fmt.Errorf("sbx: code stream ended without a complete event: %w", io.ErrUnexpectedEOF))
	}
}

// readCodeEvents parses server-sent events from r into CodeEvents. An
// error event that carries an api.Error (a failure of the sandbox, not of
// the code) ends the sequence as an *Error.
func readCodeEvents(r io.Reader) iter.Seq2[CodeEvent, error] {
	return func(yield func(CodeEvent, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 512<<20) // a result may carry a large image
		var name string
		var data []byte
		for sc.Scan() {
			line := sc.Bytes()
			switch {
			case len(line) == 0:
				if data == nil {
					continue
				}
				ev, err := decodeCodeEvent(name, data)
				name, data = "", nil
				if !yield(ev, err) || err != nil {
					return
				}
			case bytes.HasPrefix(line, []byte("event:")):
				name = strings.TrimSpace(string(line[len("event:"):]))
			case bytes.HasPrefix(line, []byte("data:")):
				d := bytes.TrimPrefix(line[len("data:"):], []byte(" "))
				if data != nil {
					data = append(data, '\n')
				}
				data = append(data, d...)
			}
		}
		if err := sc.Err(); err != nil {
			yield(CodeEvent{}, fmt.Errorf("sbx: reading code stream: %w", err))
		}
	}
}

func decodeCodeEvent(name string, data []byte) (CodeEvent, error) {
	ev := CodeEvent{Type: name}
	var err error
	switch name {
	case api.CodeEventStdout, api.CodeEventStderr:
		var o api.CodeOutput
		err = json.Unmarshal(data, &o)
		ev.Text = o.Text
	case api.CodeEventResult:
		ev.Result = new(api.CodeResult)
		err = json.Unmarshal(data, ev.Result)
	case api.CodeEventError:
		// {code, message}: the sandbox failed; {name, message, traceback}:
		// the code did.
		var probe struct {
			Code string `json:"code"`
		}
		if json.Unmarshal(data, &probe) == nil && probe.Code != "" {
			var e api.Error
			if err := json.Unmarshal(data, &e); err != nil {
				return ev, err
			}
			return ev, &Error{Status: http.StatusServiceUnavailable, Code: e.Code, Message: e.Message}
		}
		ev.Error = new(api.CodeError)
		err = json.Unmarshal(data, ev.Error)
	case api.CodeEventComplete:
		ev.Complete = new(api.CodeComplete)
		err = json.Unmarshal(data, ev.Complete)
	}
	if err != nil {
		return ev, fmt.Errorf("sbx: decoding %s event: %w", name, err)
	}
	return ev, nil
}

// IsInterpreterNotAvailable reports whether err says the sandbox's image
// lacks what a code language needs.
func IsInterpreterNotAvailable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == api.CodeInterpreterNotAvailable
}
