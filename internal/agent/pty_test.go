package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sbx-dev/sbx/api"
)

// ptyConn is a test client of a terminal.
type ptyConn struct {
	tb   testing.TB
	c    *websocket.Conn
	ctx  context.Context
	out  bytes.Buffer
	ctrl []api.PTYMessage
}

func (c *testClient) openPTY(tb testing.TB, query string) *ptyConn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	tb.Cleanup(cancel)
	conn, resp, err := websocket.Dial(ctx, "ws://agent/pty?"+query, &websocket.DialOptions{HTTPClient: c.hc})
	if err != nil {
		tb.Fatalf("dial pty: %v (%v)", err, resp)
	}
	tb.Cleanup(func() { conn.CloseNow() })
	return &ptyConn{tb: tb, c: conn, ctx: ctx}
}

func (p *ptyConn) send(s string) {
	p.tb.Helper()
	if err := p.c.Write(p.ctx, websocket.MessageBinary, []byte(s)); err != nil {
		p.tb.Fatal(err)
	}
}

func (p *ptyConn) control(m api.PTYMessage) {
	p.tb.Helper()
	b, _ := json.Marshal(m)
	if err := p.c.Write(p.ctx, websocket.MessageText, b); err != nil {
		p.tb.Fatal(err)
	}
}

// until reads until the output contains want, or, for the control types
// ready and exit, a control message of that type arrives; it fails the
// test on timeout or close.
func (p *ptyConn) until(want string) {
	p.tb.Helper()
	for {
		if want == api.PTYReady || want == api.PTYExit {
			for _, m := range p.ctrl {
				if m.Type == want {
					return
				}
			}
		} else if strings.Contains(p.out.String(), want) {
			return
		}
		typ, data, err := p.c.Read(p.ctx)
		if err != nil {
			p.tb.Fatalf("waiting for %q: %v; output so far: %q, control %+v", want, err, p.out.String(), p.ctrl)
		}
		if typ == websocket.MessageBinary {
			p.out.Write(data)
			continue
		}
		var m api.PTYMessage
		if err := json.Unmarshal(data, &m); err != nil {
			p.tb.Fatalf("control frame %q: %v", data, err)
		}
		p.ctrl = append(p.ctrl, m)
	}
}

func TestPTY(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	a := c.openPTY(t, "cols=100&rows=30")
	a.until(api.PTYReady)
	if r := a.ctrl[0]; r.Cols != 100 || r.Rows != 30 || r.Pid <= 0 || r.Session != "default" {
		t.Errorf("ready %+v", r)
	}
	a.send("stty size; echo marker-$((6*7))\n")
	a.until("marker-42")
	if !strings.Contains(a.out.String(), "30 100") {
		t.Errorf("stty size did not see 30 100: %q", a.out.String())
	}
	// Resize is seen by the program in the terminal.
	a.control(api.PTYMessage{Type: api.PTYResize, Cols: 132, Rows: 43})
	a.send("stty size\n")
	a.until("43 132")

	// A second client attaches to the same terminal and gets the recent
	// output first; both see what either types.
	b := c.openPTY(t, "")
	b.until("marker-42")
	b.send("echo from-b\n")
	a.until("from-b")
	b.until("from-b")

	// A client that leaves does not end the terminal; one that comes back
	// sees what happened meanwhile.
	a.c.Close(websocket.StatusNormalClosure, "bye")
	b.send("echo while-away\n")
	b.until("while-away")
	a2 := c.openPTY(t, "")
	a2.until("while-away")

	// exit ends the terminal with its exit code for every client.
	a2.send("exit 7\n")
	for _, p := range []*ptyConn{a2, b} {
		p.until(api.PTYExit)
		last := p.ctrl[len(p.ctrl)-1]
		if code, _ := last.Code.(float64); last.Type != api.PTYExit || code != 7 {
			t.Errorf("exit message %+v", last)
		}
	}
	// The next connection starts a fresh shell.
	n := c.openPTY(t, "")
	n.until(api.PTYReady)
	if n.ctrl[0].Pid == a.ctrl[0].Pid {
		t.Errorf("new terminal reused pid %d", n.ctrl[0].Pid)
	}
}

func TestPTYSessionAndErrors(t *testing.T) {
	c, _ := startExecAgent(t, Config{})
	c.call(t, "POST", "/sessions", api.CreateSessionRequest{ID: "term", Cwd: "/", Env: map[string]string{"WHO": "term"}}, nil)
	p := c.openPTY(t, "session=term")
	p.send(`echo "$PWD:$WHO:$TERM"` + "\n")
	p.until("/:term:xterm-256color")
	var list api.SessionList
	c.call(t, "GET", "/sessions", nil, &list)
	for _, s := range list.Sessions {
		if s.ID == "term" && !s.Terminal {
			t.Errorf("session does not show its terminal: %+v", s)
		}
	}
	// Deleting the session ends its terminal.
	c.call(t, "DELETE", "/sessions/term", nil, nil)
	p.until(api.PTYExit)

	// A plain GET is not a WebSocket: 426.
	status, b := c.do(t, "GET", "/pty", nil)
	if status != http.StatusUpgradeRequired || !strings.Contains(string(b), api.CodeUpgradeRequired) {
		t.Errorf("plain GET: %d %s", status, b)
	}
	for _, q := range []string{"cols=0&rows=10", "cols=10", "cols=x&rows=1", "session=../x"} {
		if status, _ := c.do(t, "GET", "/pty?"+q, nil); status != 400 {
			t.Errorf("%s: status %d", q, status)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws://agent/pty?session=absent", &websocket.DialOptions{HTTPClient: c.hc})
	if err == nil || resp == nil || resp.StatusCode != 404 {
		t.Errorf("unknown session: %v %v", err, resp)
	}
}
