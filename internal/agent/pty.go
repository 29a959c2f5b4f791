package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// PTY terminals. A terminal is an interactive bash on a pseudo-terminal,
// one per session, that outlives the WebSockets attached to it: it keeps
// its recent output so that a client attaching later sees the screen's
// recent history, and any number of clients may be attached at once. It
// ends when its shell exits.

const (
	// clientQueue is how many output messages may wait for a slow
	// client before it is disconnected: a terminal never waits for its
	// slowest viewer.
	clientQueue = 1024
	maxPTYInput = 1 << 20
)

func (a *Agent) registerPTY() {
	a.mux.HandleFunc("GET /pty", a.handlePTY)
}

// ptySize parses ?cols=&rows=; zero means not given.
func ptySize(r *http.Request) (cols, rows int, err error) {
	q := r.URL.Query()
	parse := func(name string) (int, error) {
		s := q.Get(name)
		if s == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return 0, fmt.Errorf("%w: %s=%q: use a number from 1 to 1000", errdefs.ErrInvalidArgument, name, s)
		}
		return n, nil
	}
	if cols, err = parse("cols"); err != nil {
		return 0, 0, err
	}
	if rows, err = parse("rows"); err != nil {
		return 0, 0, err
	}
	if (cols == 0) != (rows == 0) {
		return 0, 0, fmt.Errorf("%w: give both cols and rows, or neither", errdefs.ErrInvalidArgument)
	}
	return cols, rows, nil
}

// IsWebSocket reports whether r asks to upgrade to a WebSocket.
func IsWebSocket(r *http.Request) bool {
	return headerHas(r.Header, "Connection", "upgrade") && headerHas(r.Header, "Upgrade", "websocket")
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func (a *Agent) handlePTY(w http.ResponseWriter, r *http.Request) {
	cols, rows, err := ptySize(r)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	sid := r.URL.Query().Get("session")
	if sid == "" {
		sid = api.DefaultSession
	} else if err := api.ValidateSessionID(sid); err != nil {
		errdefs.Write(w, invalid(err))
		return
	}
	if !IsWebSocket(r) {
		w.Header().Set("Upgrade", "websocket")
		errdefs.Write(w, fmt.Errorf("%w: GET /pty is a WebSocket endpoint; connect with a WebSocket client (Connection: Upgrade, Upgrade: websocket)", errdefs.ErrUpgradeRequired))
		return
	}
	s, err := a.sessions.get(sid)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	t, err := s.terminal(cols, rows)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// sbxd authenticates; browsers reach the agent only through it.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept has answered
	}
	conn.SetReadLimit(maxPTYInput)
	t.attach(r.Context(), conn, cols, rows)
}

// terminal is a shell on a pseudo-terminal.
type terminal struct {
	s      *session
	p      *process
	master *os.File
	limit  int

	mu      sync.Mutex
	clients map[*ptyClient]struct{}
	replay  []byte
	cols    int
	rows    int
	ended   bool
	code    int

	endOnce sync.Once
	eof     chan struct{} // the output pump is done
}

type ptyClient struct {
	out chan wsMsg // closed when the client is dropped
	why string     // why it was dropped; set before out is closed
}

type wsMsg struct {
	typ  websocket.MessageType
	data []byte
}

func controlMsg(m api.PTYMessage) wsMsg {
	b, _ := json.Marshal(m)
	return wsMsg{typ: websocket.MessageText, data: b}
}

// terminal returns the session's terminal, starting one if it has none.
func (s *session) terminal(cols, rows int) (*terminal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("%w: session %q was deleted", errdefs.ErrSessionNotFound, s.id)
	}
	// A terminal whose shell has exited stays registered for a moment
	// while end tells its clients; a new client gets a fresh one.
	if s.term != nil && !s.term.hasEnded() {
		return s.term, nil
	}
	if cols == 0 {
		cols, rows = 80, 24
	}
	t, err := s.startTerminal(cols, rows)
	if err != nil {
		return nil, err
	}
	s.term = t
	return t, nil
}

func (s *session) startTerminal(cols, rows int) (*terminal, error) {
	a := s.a
	master, slave, err := openPTY()
	if err != nil {
		return nil, fmt.Errorf("%w: cannot open a pseudo-terminal: %v", errdefs.ErrUnavailable, err)
	}
	defer slave.Close()
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)}); err != nil {
		master.Close()
		return nil, fmt.Errorf("set terminal size: %w", err)
	}
	cwd := s.cwd
	if checkDir(cwd) != nil {
		cwd = "/"
	}
	scope := s.scope + ".t" + strconv.FormatUint(s.calls.Add(1), 10)
	extra := maps.Clone(s.env)
	if _, ok := extra["TERM"]; !ok {
		if extra == nil {
			extra = map[string]string{}
		}
		extra["TERM"] = "xterm-256color"
	}
	p, err := startProcess(&startSpec{
		path:  a.cfg.Shell,
		argv:  []string{"bash", "-i"},
		env:   mergeEnv(a.env.environ(), extra, a.tagEnv(scope)),
		dir:   cwd,
		files: []*os.File{slave, slave, slave},
		sys:   &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0},
	})
	if err != nil {
		master.Close()
		return nil, startError(a.cfg.Shell, err)
	}
	t := &terminal{s: s, p: p, master: master, limit: a.cfg.TerminalReplay, clients: map[*ptyClient]struct{}{},
		cols: cols, rows: rows, eof: make(chan struct{})}
	go t.pump()
	go t.watch()
	return t, nil
}

// openPTY opens a new pseudo-terminal pair. The master is non-blocking so
// that reads go through the runtime's poller and can be interrupted.
func openPTY() (master, slave *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("unlock: %w", err)
	}
	// TIOCGPTPEER opens the slave without its path, which may not be
	// reachable in every mount namespace.
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	var s *os.File
	if errno == 0 {
		s = os.NewFile(sfd, "/dev/pts/peer")
	} else {
		n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
		if err != nil {
			unix.Close(fd)
			return nil, nil, err
		}
		s, err = os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			unix.Close(fd)
			return nil, nil, err
		}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		s.Close()
		return nil, nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), s, nil
}

// pump copies the terminal's output to the replay buffer and the clients.
func (t *terminal) pump() {
	defer close(t.eof)
	buf := make([]byte, 32<<10)
	for {
		n, err := t.master.Read(buf)
		if n > 0 {
			t.broadcast(wsMsg{typ: websocket.MessageBinary, data: append([]byte(nil), buf[:n]...)})
		}
		if err != nil {
			return // EIO once every holder of the slave side is gone
		}
	}
}

// broadcast records output and sends it to every client.
func (t *terminal) broadcast(m wsMsg) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.replay = append(t.replay, m.data...)
	if len(t.replay) > 2*t.limit {
		t.replay = append([]byte(nil), t.replay[len(t.replay)-t.limit:]...)
	}
	for c := range t.clients {
		select {
		case c.out <- m:
		default:
			// Too slow: drop it rather than hold up the terminal.
			delete(t.clients, c)
			c.why = "slow"
			close(c.out)
		}
	}
}

// watch ends the terminal when its shell exits.
func (t *terminal) watch() {
	<-t.p.Done()
	// Jobs left in the background may hold the terminal open; their
	// output after the shell's exit is not waited for.
	select {
	case <-t.eof:
	case <-time.After(200 * time.Millisecond):
	}
	t.end(exitCode(t.p.Status()))
}

// end tells every client the exit code and closes the terminal.
func (t *terminal) end(code int) {
	t.endOnce.Do(func() {
		t.mu.Lock()
		t.ended, t.code = true, code
		for c := range t.clients {
			select {
			case c.out <- controlMsg(api.PTYMessage{Type: api.PTYExit, Code: code}):
			default:
			}
			c.why = "ended"
			close(c.out)
		}
		clear(t.clients)
		t.mu.Unlock()
		t.master.Close() // hangs up what is left on the terminal
		s := t.s
		s.mu.Lock()
		if s.term == t {
			s.term = nil
		}
		s.mu.Unlock()
	})
}

func (t *terminal) hasEnded() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ended
}

// shutdown kills the terminal's shell (its session is being deleted).
func (t *terminal) shutdown() {
	_ = t.p.signalGroup(syscall.SIGKILL)
	t.end(128 + int(syscall.SIGKILL))
}

func (t *terminal) resize(cols, rows int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := unix.IoctlSetWinsize(int(t.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)}); err != nil {
		return err
	}
	t.cols, t.rows = cols, rows
	return nil
}

// attach serves one WebSocket client until it leaves or the terminal ends.
func (t *terminal) attach(ctx context.Context, conn *websocket.Conn, cols, rows int) {
	defer conn.CloseNow()
	if cols > 0 {
		_ = t.resize(cols, rows)
	}
	c := &ptyClient{out: make(chan wsMsg, clientQueue)}
	t.mu.Lock()
	if t.ended {
		code := t.code
		t.mu.Unlock()
		m := controlMsg(api.PTYMessage{Type: api.PTYExit, Code: code})
		_ = conn.Write(ctx, m.typ, m.data)
		conn.Close(websocket.StatusNormalClosure, "terminal ended")
		return
	}
	c.out <- controlMsg(api.PTYMessage{Type: api.PTYReady, Pid: t.p.pid, Session: t.s.id, Cols: t.cols, Rows: t.rows})
	if len(t.replay) > 0 {
		start := max(0, len(t.replay)-t.limit)
		c.out <- wsMsg{typ: websocket.MessageBinary, data: append([]byte(nil), t.replay[start:]...)}
	}
	t.clients[c] = struct{}{}
	t.mu.Unlock()

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for m := range c.out {
			if err := conn.Write(ctx, m.typ, m.data); err != nil {
				conn.CloseNow()
				return
			}
		}
		t.mu.Lock()
		why := c.why
		t.mu.Unlock()
		switch why {
		case "slow":
			conn.Close(websocket.StatusPolicyViolation, "client too slow; reconnect to resume")
		case "ended":
			conn.Close(websocket.StatusNormalClosure, "terminal ended")
		}
	}()

	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			break
		}
		if typ == websocket.MessageBinary {
			if _, err := t.master.Write(data); err != nil {
				break
			}
			continue
		}
		var m api.PTYMessage
		if err := json.Unmarshal(data, &m); err != nil || m.Type != api.PTYResize {
			t.sendTo(c, controlMsg(api.PTYMessage{Type: api.PTYError, Code: api.CodeInvalidRequest,
				Message: `unknown control message; send binary frames for input and {"type":"resize","cols":N,"rows":N} to resize`}))
			continue
		}
		if m.Cols < 1 || m.Rows < 1 || m.Cols > 1000 || m.Rows > 1000 {
			t.sendTo(c, controlMsg(api.PTYMessage{Type: api.PTYError, Code: api.CodeInvalidRequest,
				Message: fmt.Sprintf("resize to %dx%d: cols and rows must be 1-1000", m.Cols, m.Rows)}))
			continue
		}
		if err := t.resize(m.Cols, m.Rows); err != nil && !errors.Is(err, os.ErrClosed) {
			t.sendTo(c, controlMsg(api.PTYMessage{Type: api.PTYError, Code: api.CodeInternal, Message: err.Error()}))
		}
	}
	t.mu.Lock()
	if _, ok := t.clients[c]; ok {
		delete(t.clients, c)
		c.why = "gone"
		close(c.out)
	}
	t.mu.Unlock()
	<-writerDone
}

// sendTo queues a message for one client if it is still attached.
func (t *terminal) sendTo(c *ptyClient, m wsMsg) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.clients[c]; ok {
		select {
		case c.out <- m:
		default:
		}
	}
}
