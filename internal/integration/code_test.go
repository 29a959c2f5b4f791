package integration

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
)

// mainText is the text of the run's main result, or "".
func mainText(res *api.RunCodeResult) string {
	for _, r := range res.Results {
		if r.IsMainResult {
			return r.Text
		}
	}
	return ""
}

func mustRun(t *testing.T, sb *client.Sandbox, code string, opts ...client.CodeOption) *api.RunCodeResult {
	t.Helper()
	res, err := sb.RunCode(ctxT(t), code, opts...)
	if err != nil {
		t.Fatalf("run %q: %v", code, err)
	}
	return res
}

func mustContext(t *testing.T, sb *client.Sandbox, lang string) string {
	t.Helper()
	cc, err := sb.CreateCodeContext(ctxT(t), api.CreateCodeContextRequest{Language: lang})
	if err != nil {
		t.Fatalf("create %s context: %v", lang, err)
	}
	return cc.ID
}

func TestCodeInterpreter(t *testing.T) {
	RequirePythonImage(t)
	d := StartDaemon(t)
	sb := d.Client.Sandbox("notebook")
	if _, err := sb.Create(ctxT(t), &api.CreateSandboxRequest{Image: "python"}); err != nil {
		t.Fatal(err)
	}

	t.Run("state persists and stays in its context", func(t *testing.T) {
		a, b := mustContext(t, sb, api.LanguagePython), mustContext(t, sb, api.LanguagePython)
		mustRun(t, sb, "import math\nx = 41\ndef inc(v):\n    return v + 1", client.InContext(a))
		res := mustRun(t, sb, "inc(x) * math.floor(1.9)", client.InContext(a))
		if mainText(res) != "42" || res.ExecutionCount != 2 || res.Error != nil {
			t.Errorf("in a: %+v", res)
		}
		res = mustRun(t, sb, "x", client.InContext(b))
		if res.Error == nil || res.Error.Name != "NameError" {
			t.Errorf("x visible in b: %+v", res)
		}
		list, err := sb.CodeContexts(ctxT(t))
		if err != nil || !slices.ContainsFunc(list, func(c api.CodeContext) bool { return c.ID == a }) {
			t.Errorf("list %+v %v", list, err)
		}
		if err := sb.DeleteCodeContext(ctxT(t), b); err != nil {
			t.Fatal(err)
		}
		_, err = sb.RunCode(ctxT(t), "1", client.InContext(b))
		var e *client.Error
		if !errors.As(err, &e) || e.Code != api.CodeContextNotFound {
			t.Errorf("run in deleted context: %v", err)
		}
	})

	t.Run("matplotlib figure is a PNG", func(t *testing.T) {
		res := mustRun(t, sb, "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('sbx')\nplt.show()")
		var pngs int
		for _, r := range res.Results {
			if r.PNG == "" {
				continue
			}
			pngs++
			b, err := r.PNGBytes()
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("result is not a PNG: %v", err)
			}
			if sz := img.Bounds().Size(); sz.X < 100 || sz.Y < 100 {
				t.Errorf("figure is %v", sz)
			}
		}
		if pngs != 1 || res.Error != nil {
			t.Errorf("%d PNG results, error %+v", pngs, res.Error)
		}
	})

	t.Run("DataFrame is an HTML table", func(t *testing.T) {
		res := mustRun(t, sb, "import pandas as pd\npd.DataFrame({'city': ['Oslo', 'Lima'], 'temp': [3.5, 19.0]})")
		if len(res.Results) != 1 {
			t.Fatalf("results %+v error %+v", res.Results, res.Error)
		}
		r := res.Results[0]
		if !strings.Contains(r.HTML, "<table") || !strings.Contains(r.HTML, "Oslo") || !strings.Contains(r.Text, "Lima") {
			t.Errorf("html %q text %q", r.HTML, r.Text)
		}
	})

	t.Run("errors carry a traceback", func(t *testing.T) {
		for _, tc := range []struct{ code, name, inTraceback string }{
			{"def f(:\n    pass", "SyntaxError", "def f(:"},
			{"def half(v):\n    return v / 0\nhalf(4)", "ZeroDivisionError", "return v / 0"},
		} {
			res := mustRun(t, sb, tc.code)
			if res.Error == nil || res.Error.Name != tc.name || !strings.Contains(strings.Join(res.Error.Traceback, "\n"), tc.inTraceback) {
				t.Errorf("%q: error %+v", tc.code, res.Error)
			}
		}
	})

	t.Run("timeout interrupts and the context lives on", func(t *testing.T) {
		c := mustContext(t, sb, api.LanguagePython)
		mustRun(t, sb, "kept = 'yes'", client.InContext(c))
		t0 := time.Now()
		res := mustRun(t, sb, "import time\nwhile True:\n    time.sleep(0.1)", client.InContext(c), client.CodeTimeout(500*time.Millisecond))
		if !res.TimedOut || res.Error == nil || res.Error.Name != "KeyboardInterrupt" || time.Since(t0) > 10*time.Second {
			t.Errorf("timed-out run: %+v after %s", res, time.Since(t0))
		}
		res = mustRun(t, sb, "kept", client.InContext(c))
		if mainText(res) != "'yes'" || res.StateLost {
			t.Errorf("after the timeout: %+v", res)
		}
	})

	t.Run("crash is reported and the context restarts", func(t *testing.T) {
		c := mustContext(t, sb, api.LanguagePython)
		mustRun(t, sb, "x = 1", client.InContext(c))
		res := mustRun(t, sb, "import os\nos._exit(1)", client.InContext(c))
		if res.Error == nil || res.Error.Name != api.ErrorNameInterpreterCrashed {
			t.Fatalf("crash: %+v", res)
		}
		res = mustRun(t, sb, "'x' in globals()", client.InContext(c))
		if !res.StateLost || mainText(res) != "False" {
			t.Errorf("after crash: %+v", res)
		}
		// Killed from outside while idle, as the OOM killer would.
		res = mustRun(t, sb, "import os\nx = 2\nos.getpid()", client.InContext(c))
		pid, err := strconv.Atoi(mainText(res))
		if err != nil {
			t.Fatalf("pid %q: %v", mainText(res), err)
		}
		if r := mustExec(t, d, "notebook", fmt.Sprintf("kill -9 %d", pid)); r.ExitCode != 0 {
			t.Fatalf("kill: %+v", r)
		}
		res = mustRun(t, sb, "'x' in globals()", client.InContext(c))
		if !res.StateLost || mainText(res) != "False" || res.Error != nil {
			t.Errorf("after kill -9: %+v %+v", res, res.Error)
		}
	})

	t.Run("stream delivers output and results in order", func(t *testing.T) {
		var got []string
		var gaps []time.Duration
		last := time.Now()
		req := api.RunCodeRequest{Code: "import time\nprint('first')\ndisplay('shown')\ntime.sleep(0.3)\nprint('second')\n'last'"}
		for ev, err := range sb.RunCodeStream(ctxT(t), req) {
			if err != nil {
				t.Fatal(err)
			}
			gaps = append(gaps, time.Since(last))
			last = time.Now()
			switch {
			case ev.Result != nil:
				got = append(got, "result:"+ev.Result.Text)
			case ev.Complete != nil:
				got = append(got, "complete")
			default:
				got = append(got, ev.Type+":"+ev.Text)
			}
		}
		want := []string{"stdout:first\n", "result:'shown'", "stdout:second\n", "result:'last'", "complete"}
		if !slices.Equal(got, want) {
			t.Fatalf("events %q, want %q", got, want)
		}
		// The output before the sleep arrived before the sleep ended.
		if gaps[2] < 200*time.Millisecond {
			t.Errorf("events were not streamed while the code ran: gaps %v", gaps)
		}
	})

	t.Run("javascript top-level await", func(t *testing.T) {
		c := mustContext(t, sb, api.LanguageJavaScript)
		mustRun(t, sb, "const base = await new Promise(r => setTimeout(() => r(40), 10))", client.InContext(c))
		res := mustRun(t, sb, "base + 2", client.InContext(c))
		if mainText(res) != "42" || res.Error != nil {
			t.Errorf("got %+v", res)
		}
	})

	t.Run("typescript with type annotations", func(t *testing.T) {
		res := mustRun(t, sb, "interface Pt { x: number }\nconst p: Pt = { x: 41 };\nconst inc = (v: number): number => v + 1;\ninc(p.x)",
			client.InLanguage(api.LanguageTypeScript))
		if mainText(res) != "42" || res.Error != nil {
			t.Errorf("got %+v", res)
		}
	})

	t.Run("CLI prints results and saves images", func(t *testing.T) {
		out := t.TempDir()
		stdout, stderr, code := d.CLI(nil, "run", "notebook", "--out", out, "-c",
			"import matplotlib.pyplot as plt\nprint('hello')\nplt.bar([1, 2], [3, 4])\n6 * 7")
		if code != 0 || !strings.Contains(stdout, "hello\n") || !strings.Contains(stdout, "42") {
			t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
		}
		files, _ := filepath.Glob(filepath.Join(out, "*.png"))
		if len(files) != 1 {
			t.Fatalf("saved %v; stderr %q", files, stderr)
		}
		b, _ := os.ReadFile(files[0])
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("saved image: %v", err)
		}
		_, stderr, code = d.CLI(nil, "run", "notebook", "--lang", "js", "-c", "null.x")
		if code != 1 || !strings.Contains(stderr, "TypeError") {
			t.Errorf("error run: exit %d stderr %q", code, stderr)
		}
	})
}

func TestCodeOnDefaultImage(t *testing.T) {
	d := StartDaemon(t)
	sb := d.Client.Sandbox("lean")
	for _, lang := range []string{api.LanguagePython, api.LanguageTypeScript} {
		t0 := time.Now()
		_, err := sb.CreateCodeContext(ctxT(t), api.CreateCodeContextRequest{Language: lang})
		if !client.IsInterpreterNotAvailable(err) || !strings.Contains(err.Error(), `"image": "python"`) {
			t.Errorf("%s: %v", lang, err)
		}
		if time.Since(t0) > 20*time.Second {
			t.Errorf("%s: the refusal took %s", lang, time.Since(t0))
		}
	}
	// JavaScript needs only node, which the default image has.
	res := mustRun(t, sb, "const v = await Promise.resolve(6 * 7); v", client.InLanguage(api.LanguageJavaScript))
	if mainText(res) != "42" {
		t.Errorf("javascript on the default image: %+v", res)
	}
	_, stderr, code := d.CLI(nil, "run", "lean", "-c", "1")
	if code == 0 || !strings.Contains(stderr, api.CodeInterpreterNotAvailable) || !strings.Contains(stderr, "--image python") {
		t.Errorf("CLI: exit %d stderr %q", code, stderr)
	}
}
