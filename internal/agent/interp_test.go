package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
)

// These tests run the runners with the host's interpreters: python3 with
// IPython, node. The python image's extras (Matplotlib, pandas,
// TypeScript) are covered end to end in internal/integration.

// codeServer is a code manager served over HTTP until the test ends.
type codeServer struct {
	t   *testing.T
	m   *codeManager
	url string
}

func newCodeServer(t *testing.T, pool int) *codeServer {
	t.Helper()
	m := newCodeManager(codeConfig{defaultCwd: t.TempDir(), pool: pool, dir: t.TempDir(), environ: os.Environ, outputCap: 1 << 20})
	return newCodeServerWith(t, m)
}

func newCodeServerWith(t *testing.T, m *codeManager) *codeServer {
	mux := http.NewServeMux()
	m.register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		m.close()
	})
	return &codeServer{t: t, m: m, url: srv.URL}
}

func requirePythonIPython(t *testing.T) {
	t.Helper()
	if err := exec.Command("python3", "-c", "import IPython").Run(); err != nil {
		t.Skip("needs python3 with IPython on $PATH")
	}
}

func requireNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("needs node on $PATH")
	}
}

// do sends a JSON request and decodes a JSON answer into out, returning the
// status.
func (s *codeServer) do(method, path string, in, out any) int {
	s.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.url+path, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: decoding %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

func (s *codeServer) create(lang string) api.CodeContext {
	s.t.Helper()
	var c struct {
		api.CodeContext
		api.Error
	}
	if st := s.do("POST", "/contexts", api.CreateCodeContextRequest{Language: lang}, &c); st != http.StatusCreated {
		s.t.Fatalf("create %s context: status %d: %s", lang, st, c.Message)
	}
	return c.CodeContext
}

func (s *codeServer) run(req api.RunCodeRequest) api.RunCodeResult {
	s.t.Helper()
	var res api.RunCodeResult
	if st := s.do("POST", "/code", req, &res); st != http.StatusOK {
		s.t.Fatalf("run %q: status %d", req.Code, st)
	}
	return res
}

// mainText is the text of the run's main result, or "".
func mainText(res api.RunCodeResult) string {
	for _, r := range res.Results {
		if r.IsMainResult {
			return r.Text
		}
	}
	return ""
}

type sseEvent struct {
	name string
	data json.RawMessage
}

// stream runs req with Accept: text/event-stream and returns the events.
func (s *codeServer) stream(req api.RunCodeRequest) []sseEvent {
	s.t.Helper()
	b, _ := json.Marshal(req)
	hr, _ := http.NewRequest("POST", s.url+"/code", bytes.NewReader(b))
	hr.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		s.t.Fatalf("content type %q", ct)
	}
	var events []sseEvent
	var name string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			events = append(events, sseEvent{name, json.RawMessage(strings.TrimPrefix(line, "data: "))})
		}
	}
	return events
}

func TestCodePythonStateAndIsolation(t *testing.T) {
	requirePythonIPython(t)
	s := newCodeServer(t, 0)
	a, b := s.create(api.LanguagePython), s.create(api.LanguagePython)
	if a.ID == b.ID || a.Language != api.LanguagePython || a.Cwd != s.m.cfg.defaultCwd {
		t.Fatalf("contexts %+v %+v", a, b)
	}

	s.run(api.RunCodeRequest{Context: a.ID, Code: "import math\nx = 41\ndef f(v):\n    return v + 1"})
	res := s.run(api.RunCodeRequest{Context: a.ID, Code: "f(x) * math.floor(1.5)"})
	if got := mainText(res); got != "42" || res.Error != nil || res.ExecutionCount != 2 || res.StateLost {
		t.Errorf("second run in a: text %q error %+v count %d stateLost %v", got, res.Error, res.ExecutionCount, res.StateLost)
	}
	res = s.run(api.RunCodeRequest{Context: b.ID, Code: "x"})
	if res.Error == nil || res.Error.Name != "NameError" || len(res.Results) != 0 {
		t.Errorf("x leaked into context b: %+v", res)
	}

	var list api.CodeContextList
	s.do("GET", "/contexts", nil, &list)
	if len(list.Contexts) != 2 || list.Contexts[0].ID != a.ID || list.Contexts[1].ID != b.ID {
		t.Errorf("list = %+v", list)
	}
	if st := s.do("DELETE", "/contexts/"+a.ID, nil, nil); st != http.StatusNoContent {
		t.Errorf("delete: status %d", st)
	}
	var e api.Error
	if st := s.do("POST", "/code", api.RunCodeRequest{Context: a.ID, Code: "1"}, &e); st != http.StatusNotFound || e.Code != api.CodeContextNotFound {
		t.Errorf("run in deleted context: %d %+v", st, e)
	}
}

func TestCodePythonOutputs(t *testing.T) {
	requirePythonIPython(t)
	s := newCodeServer(t, 0)
	tests := []struct {
		name  string
		code  string
		check func(t *testing.T, res api.RunCodeResult)
	}{
		{"stdout and stderr", "import sys\nprint('out')\nprint('err', file=sys.stderr)", func(t *testing.T, res api.RunCodeResult) {
			if !slices.Equal(res.Logs.Stdout, []string{"out\n"}) || !slices.Equal(res.Logs.Stderr, []string{"err\n"}) {
				t.Errorf("logs %+v", res.Logs)
			}
		}},
		{"subprocess output", "import os\nos.system('echo from-shell; echo shell-err >&2')", func(t *testing.T, res api.RunCodeResult) {
			if strings.Join(res.Logs.Stdout, "") != "from-shell\n" || strings.Join(res.Logs.Stderr, "") != "shell-err\n" {
				t.Errorf("logs %+v", res.Logs)
			}
			if mainText(res) != "0" {
				t.Errorf("main result %q", mainText(res))
			}
		}},
		{"logs are capped", "print('x' * (3 << 20))\nprint('after')", func(t *testing.T, res api.RunCodeResult) {
			n := 0
			for _, s := range res.Logs.Stdout {
				n += len(s)
			}
			if !res.Logs.Truncated || n != 1<<20 {
				t.Errorf("truncated %v, %d bytes kept", res.Logs.Truncated, n)
			}
		}},
		{"rich display", "from IPython.display import HTML, Markdown, Latex, SVG, JSON, display\n" +
			"display(HTML('<b>hi</b>'))\ndisplay(JSON({'a': 1}))\nSVG('<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>')\n", func(t *testing.T, res api.RunCodeResult) {
			if len(res.Results) != 3 {
				t.Fatalf("results %+v", res.Results)
			}
			if res.Results[0].HTML != "<b>hi</b>" || res.Results[0].IsMainResult {
				t.Errorf("html result %+v", res.Results[0])
			}
			if string(res.Results[1].JSON) != `{"a":1}` {
				t.Errorf("json result %s", res.Results[1].JSON)
			}
			if !strings.Contains(res.Results[2].SVG, "<svg") || !res.Results[2].IsMainResult {
				t.Errorf("svg result %+v", res.Results[2])
			}
		}},
		{"semicolon hides the value", "1 + 1;", func(t *testing.T, res api.RunCodeResult) {
			if len(res.Results) != 0 {
				t.Errorf("results %+v", res.Results)
			}
		}},
		{"top-level await", "import asyncio\nawait asyncio.sleep(0.01)\n'awaited'", func(t *testing.T, res api.RunCodeResult) {
			if mainText(res) != "'awaited'" {
				t.Errorf("main result %q, error %+v", mainText(res), res.Error)
			}
		}},
		{"syntax error", "def f(:\n  pass", func(t *testing.T, res api.RunCodeResult) {
			if res.Error == nil || res.Error.Name != "SyntaxError" || len(res.Error.Traceback) == 0 {
				t.Errorf("error %+v", res.Error)
			}
		}},
		{"runtime error", "def g():\n    return 1/0\ng()", func(t *testing.T, res api.RunCodeResult) {
			if res.Error == nil || res.Error.Name != "ZeroDivisionError" || res.Error.Message != "division by zero" {
				t.Fatalf("error %+v", res.Error)
			}
			tb := strings.Join(res.Error.Traceback, "\n")
			if !strings.Contains(tb, "g()") || !strings.Contains(tb, "return 1/0") || strings.Contains(tb, "\x1b[") {
				t.Errorf("traceback %q", tb)
			}
		}},
		{"context env and cwd", "import os\nos.getcwd()", func(t *testing.T, res api.RunCodeResult) {
			if mainText(res) != fmt.Sprintf("'%s'", s.m.cfg.defaultCwd) {
				t.Errorf("cwd %q", mainText(res))
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, s.run(api.RunCodeRequest{Code: tc.code}))
		})
	}
}

func TestCodeContextCwdEnv(t *testing.T) {
	requirePythonIPython(t)
	requireNode(t)
	// The sandbox's environment changes between the start of the pooled
	// interpreters and the creation of the contexts that take them.
	var phase atomic.Value
	phase.Store("start")
	environ := func() []string {
		env := append(os.Environ(), "SBX_PHASE="+phase.Load().(string))
		if phase.Load() == "start" {
			env = append(env, "SBX_GONE=1")
		}
		return env
	}
	m := newCodeManager(codeConfig{defaultCwd: t.TempDir(), pool: 1, dir: t.TempDir(), environ: environ, outputCap: 1 << 20})
	s := newCodeServerWith(t, m)
	sub := filepath.Join(m.cfg.defaultCwd, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ lang, code, want string }{
		{api.LanguagePython, "import os, subprocess\n(os.getcwd(), os.environ['GREETING'], os.environ['SBX_PHASE'], 'SBX_GONE' in os.environ, subprocess.check_output('echo $GREETING', shell=True, text=True))",
			fmt.Sprintf("('%s', 'hi', '%%s', %%s, 'hi\\n')", sub)},
		{api.LanguageJavaScript, "[process.cwd(), process.env.GREETING, process.env.SBX_PHASE, 'SBX_GONE' in process.env, require('child_process').execSync('echo $GREETING').toString()]",
			fmt.Sprintf("[ '%s', 'hi', '%%s', %%s, 'hi\\n' ]", sub)},
	} {
		phase.Store("start")
		for i, p := range []string{"start", "later"} {
			if i == 1 {
				// The second context comes from the pool, started before
				// the cwd and env were known.
				waitPoolFilled(t, m, tc.lang)
				phase.Store(p)
			}
			var c api.CodeContext
			st := s.do("POST", "/contexts", api.CreateCodeContextRequest{Language: tc.lang, Cwd: "sub", Env: map[string]string{"GREETING": "hi"}}, &c)
			if st != http.StatusCreated || c.Cwd != sub {
				t.Fatalf("create: %d %+v", st, c)
			}
			gone := map[string]string{api.LanguagePython: "True", api.LanguageJavaScript: "true"}[tc.lang]
			if i == 1 {
				gone = map[string]string{api.LanguagePython: "False", api.LanguageJavaScript: "false"}[tc.lang]
			}
			want := fmt.Sprintf(tc.want, p, gone)
			res := s.run(api.RunCodeRequest{Context: c.ID, Code: tc.code})
			if got := mainText(res); got != want {
				t.Errorf("%s #%d: got %q (error %+v), want %q", tc.lang, i, got, res.Error, want)
			}
		}
	}
	var e api.Error
	if st := s.do("POST", "/contexts", api.CreateCodeContextRequest{Language: "python", Cwd: "missing"}, &e); st != http.StatusBadRequest || !strings.Contains(e.Message, "does not exist") {
		t.Errorf("missing cwd: %d %+v", st, e)
	}
	if st := s.do("POST", "/contexts", api.CreateCodeContextRequest{Language: "ruby"}, &e); st != http.StatusBadRequest || !strings.Contains(e.Message, "python, javascript, typescript") {
		t.Errorf("unknown language: %d %+v", st, e)
	}
}

// waitPoolFilled waits until lang's pool holds an idle interpreter.
func waitPoolFilled(t *testing.T, m *codeManager, lang string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		n := 0
		if p := m.pools[lang]; p != nil {
			n = len(p.idle)
		}
		m.mu.Unlock()
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the %s pool was not refilled", lang)
}

func TestCodeTimeoutKeepsContext(t *testing.T) {
	requirePythonIPython(t)
	requireNode(t)
	s := newCodeServer(t, 0)
	for _, tc := range []struct{ lang, set, hang, get, errName string }{
		{api.LanguagePython, "x = 7", "import time\ntime.sleep(30)", "x", "KeyboardInterrupt"},
		{api.LanguageJavaScript, "var x = 7", "while (true) {}", "x", "Error"},
		{api.LanguageJavaScript, "var y = 7", "await new Promise(() => {})", "y", "Error"},
	} {
		c := s.create(tc.lang)
		s.run(api.RunCodeRequest{Context: c.ID, Code: tc.set})
		t0 := time.Now()
		res := s.run(api.RunCodeRequest{Context: c.ID, Code: tc.hang, TimeoutMs: 300})
		if !res.TimedOut || res.Error == nil || res.Error.Name != tc.errName || time.Since(t0) > 5*time.Second {
			t.Errorf("%s %q: timedOut %v error %+v after %s", tc.lang, tc.hang, res.TimedOut, res.Error, time.Since(t0))
		} else if tb := strings.Join(res.Error.Traceback, "\n"); strings.Contains(tb, "runner.py") {
			t.Errorf("%s timeout traceback shows sbx's own runner:\n%s", tc.lang, tb)
		}
		res = s.run(api.RunCodeRequest{Context: c.ID, Code: tc.get})
		if mainText(res) != "7" || res.StateLost || res.TimedOut {
			t.Errorf("%s after timeout: %+v", tc.lang, res)
		}
	}
}

func TestCodeTimeoutIgnoredKills(t *testing.T) {
	requirePythonIPython(t)
	s := newCodeServer(t, 0)
	c := s.create(api.LanguagePython)
	s.run(api.RunCodeRequest{Context: c.ID, Code: "x = 1"})
	res := s.run(api.RunCodeRequest{Context: c.ID, TimeoutMs: 200,
		Code: "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass"})
	if !res.TimedOut || res.Error == nil || res.Error.Name != api.ErrorNameInterpreterCrashed {
		t.Fatalf("got %+v", res)
	}
	res = s.run(api.RunCodeRequest{Context: c.ID, Code: "'x' in globals()"})
	if !res.StateLost || mainText(res) != "False" || res.ExecutionCount != 1 {
		t.Errorf("after kill: %+v", res)
	}
}

func TestCodeCrashRecovery(t *testing.T) {
	requirePythonIPython(t)
	requireNode(t)
	s := newCodeServer(t, 0)
	for _, tc := range []struct{ lang, set, crash, check, want string }{
		{api.LanguagePython, "x = 1", "import os\nprint('bye', flush=True)\nos._exit(3)", "'x' in globals()", "False"},
		{api.LanguageJavaScript, "var x = 1", "console.log('bye'); process.exit(3)", "typeof x", "'undefined'"},
		{api.LanguagePython, "x = 1", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "'x' in globals()", "False"},
	} {
		c := s.create(tc.lang)
		s.run(api.RunCodeRequest{Context: c.ID, Code: tc.set})
		res := s.run(api.RunCodeRequest{Context: c.ID, Code: tc.crash})
		if res.Error == nil || res.Error.Name != api.ErrorNameInterpreterCrashed || res.ExecutionCount != 2 {
			t.Errorf("%s crash: %+v", tc.lang, res)
		} else {
			t.Logf("%s crash message: %s", tc.lang, res.Error.Message)
		}
		if strings.Contains(tc.crash, "bye") && !slices.Contains(res.Logs.Stdout, "bye\n") {
			t.Errorf("%s: output before the crash lost: %+v", tc.lang, res.Logs)
		}
		res = s.run(api.RunCodeRequest{Context: c.ID, Code: tc.check})
		if !res.StateLost || mainText(res) != tc.want || res.ExecutionCount != 1 || res.Error != nil {
			t.Errorf("%s after crash: %+v", tc.lang, res)
		}
		res = s.run(api.RunCodeRequest{Context: c.ID, Code: tc.check})
		if res.StateLost {
			t.Errorf("%s: stateLost reported twice", tc.lang)
		}
	}
}

func TestCodeStreamOrder(t *testing.T) {
	requirePythonIPython(t)
	requireNode(t)
	s := newCodeServer(t, 0)
	for _, tc := range []struct {
		lang, code string
		want       []string
	}{
		{api.LanguagePython, "import time\nprint('one')\ndisplay('shown')\ntime.sleep(0.05)\nprint('two')\n42",
			[]string{"stdout:one\n", "result:'shown'", "stdout:two\n", "result:42", "complete"}},
		{api.LanguageJavaScript, "console.log('one'); display('shown'); await new Promise(r => setTimeout(r, 50)); console.error('two'); 42",
			[]string{"stdout:one\n", "result:'shown'", "stderr:two\n", "result:42", "complete"}},
		{api.LanguagePython, "print('before')\nraise ValueError('boom')",
			[]string{"stdout:before\n", "error:ValueError", "complete"}},
	} {
		var got []string
		for _, ev := range s.stream(api.RunCodeRequest{Language: tc.lang, Code: tc.code}) {
			switch ev.name {
			case api.CodeEventStdout, api.CodeEventStderr:
				var o api.CodeOutput
				json.Unmarshal(ev.data, &o)
				got = append(got, ev.name+":"+o.Text)
			case api.CodeEventResult:
				var r api.CodeResult
				json.Unmarshal(ev.data, &r)
				got = append(got, "result:"+r.Text)
			case api.CodeEventError:
				var e api.CodeError
				json.Unmarshal(ev.data, &e)
				got = append(got, "error:"+e.Name)
			default:
				got = append(got, ev.name)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s events:\n got %q\nwant %q", tc.lang, got, tc.want)
		}
	}
}

func TestCodeJavaScript(t *testing.T) {
	requireNode(t)
	s := newCodeServer(t, 0)
	c := s.create(api.LanguageJavaScript)
	tests := []struct{ code, want, errName string }{
		{"const a = await Promise.resolve(20); let b = 1; function f(v) { return v * 2 }", "", ""},
		{"f(a) + b + 1", "42", ""},
		{"class P { _repr_html_() { return '<i>p</i>' } }; new P()", "P {}", ""},
		{"({x: [1, 2]})", "{ x: [ 1, 2 ] }", ""},
		{"Promise.resolve('auto-awaited')", "'auto-awaited'", ""},
		{"null.x", "", "TypeError"},
		{"let = ;", "", "SyntaxError"},
		{"throw 'plain'", "", "Error"},
		{"const fs = await import('fs'); typeof fs.readFileSync", "'function'", ""},
	}
	for _, tc := range tests {
		res := s.run(api.RunCodeRequest{Context: c.ID, Code: tc.code})
		if got := mainText(res); got != tc.want {
			t.Errorf("%q: got %q, want %q (error %+v)", tc.code, got, tc.want, res.Error)
		}
		if (res.Error == nil) != (tc.errName == "") || res.Error != nil && res.Error.Name != tc.errName {
			t.Errorf("%q: error %+v, want %q", tc.code, res.Error, tc.errName)
		}
		if res.Error != nil && strings.Contains(strings.Join(res.Error.Traceback, "\n"), "runner.js") {
			t.Errorf("%q: traceback shows the runner: %q", tc.code, res.Error.Traceback)
		}
	}
	res := s.run(api.RunCodeRequest{Context: c.ID, Code: "class Q { _repr_html_() { return '<i>q</i>' } }; new Q()"})
	if len(res.Results) != 1 || res.Results[0].HTML != "<i>q</i>" {
		t.Errorf("_repr_html_: %+v", res.Results)
	}
	res = s.run(api.RunCodeRequest{Context: c.ID, Code: "({a: 1})"})
	if len(res.Results) != 1 || string(res.Results[0].JSON) != `{"a":1}` {
		t.Errorf("json of a plain object: %+v", res.Results)
	}
}

func TestCodeNotAvailable(t *testing.T) {
	// No interpreter at all.
	t.Setenv("PATH", t.TempDir())
	s := newCodeServer(t, 0)
	for _, lang := range api.Languages {
		var e api.Error
		st := s.do("POST", "/contexts", api.CreateCodeContextRequest{Language: lang}, &e)
		if st != http.StatusBadRequest || e.Code != api.CodeInterpreterNotAvailable {
			t.Errorf("%s: %d %+v", lang, st, e)
		}
		st = s.do("POST", "/code", api.RunCodeRequest{Language: lang, Code: "1"}, &e)
		if st != http.StatusBadRequest || e.Code != api.CodeInterpreterNotAvailable {
			t.Errorf("%s run: %d %+v", lang, st, e)
		}
	}
}

func TestCodePythonWithoutIPython(t *testing.T) {
	requirePythonIPython(t)
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Fatal(err)
	}
	// A python3 that cannot import IPython: site-packages disabled.
	bin := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\nexec %s -S \"$@\"\n", strings.TrimSpace(string(out)))
	if err := os.WriteFile(filepath.Join(bin, "python3"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	s := newCodeServer(t, 1)
	var e api.Error
	t0 := time.Now()
	st := s.do("POST", "/contexts", api.CreateCodeContextRequest{Language: api.LanguagePython}, &e)
	if st != http.StatusBadRequest || e.Code != api.CodeInterpreterNotAvailable || !strings.Contains(e.Message, "IPython") {
		t.Errorf("got %d %+v", st, e)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
	var list api.CodeContextList
	s.do("GET", "/contexts", nil, &list)
	if len(list.Contexts) != 0 {
		t.Errorf("a failed context is listed: %+v", list)
	}
}

func TestCodeBadRequests(t *testing.T) {
	s := newCodeServer(t, 0)
	for _, tc := range []struct {
		path string
		body any
		code string
	}{
		{"/code", api.RunCodeRequest{}, api.CodeInvalidRequest},
		{"/code", api.RunCodeRequest{Code: "1", Language: "cobol"}, api.CodeInvalidRequest},
		{"/code", api.RunCodeRequest{Code: "1", TimeoutMs: -1}, api.CodeInvalidRequest},
		{"/code", api.RunCodeRequest{Code: "1", Context: "nope"}, api.CodeContextNotFound},
		{"/code", map[string]any{"code": "1", "bogus": true}, api.CodeInvalidRequest},
		{"/contexts", api.CreateCodeContextRequest{}, api.CodeInvalidRequest},
		{"/contexts", api.CreateCodeContextRequest{Language: "python", Env: map[string]string{"A=B": "x"}}, api.CodeInvalidRequest},
	} {
		var e api.Error
		s.do("POST", tc.path, tc.body, &e)
		if e.Code != tc.code || e.Message == "" {
			t.Errorf("%s %+v: got %+v, want %s", tc.path, tc.body, e, tc.code)
		}
	}
}

func TestFencePrefixAndRunes(t *testing.T) {
	fence := []byte("\x1eFENCE\x1e")
	for _, tc := range []struct {
		in         string
		fence, utf int
	}{
		{"abc", 0, 0},
		{"abc\x1e", 1, 0},
		{"abc\x1eFEN", 4, 0},
		{"h\xc3", 0, 1},
		{"h\xe2\x82", 0, 2},
		{"h\xe2\x82\xac", 0, 0},
	} {
		if got := fencePrefixLen([]byte(tc.in), fence); got != tc.fence {
			t.Errorf("fencePrefixLen(%q) = %d, want %d", tc.in, got, tc.fence)
		}
		if got := partialRuneLen([]byte(tc.in)); got != tc.utf {
			t.Errorf("partialRuneLen(%q) = %d, want %d", tc.in, got, tc.utf)
		}
	}
}
