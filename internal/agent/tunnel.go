package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// Port tunnels carry preview traffic from sbxd to a server inside the
// sandbox. The daemon connects to the agent's socket and asks
//
//	GET /tunnel?port=N
//	Connection: Upgrade
//	Upgrade: sbx-tunnel
//
// The agent connects to port N on the sandbox's loopback and, if that
// works, answers 101 Switching Protocols and from then on copies bytes
// both ways until both sides are done; if nothing listens it answers an
// error instead (502 PORT_NOT_LISTENING). The agent shares the sandbox's
// network namespace, so the tunnel needs no network setup beyond loopback.

const (
	tunnelProtocol = "sbx-tunnel"
	// tunnelDialTimeout bounds the connect on loopback, which is
	// immediate unless the server's accept queue is full.
	tunnelDialTimeout = 5 * time.Second
)

func (a *Agent) registerTunnel() {
	a.mux.HandleFunc("GET /tunnel", a.handleTunnel)
}

func (a *Agent) handleTunnel(w http.ResponseWriter, r *http.Request) {
	if !headerHasToken(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), tunnelProtocol) {
		errdefs.Write(w, fmt.Errorf("%w: a tunnel needs 'Connection: Upgrade' and 'Upgrade: %s'", errdefs.ErrInvalidArgument, tunnelProtocol))
		return
	}
	port, err := strconv.Atoi(r.URL.Query().Get("port"))
	if err == nil {
		err = api.ValidatePort(port)
	} else {
		err = fmt.Errorf("port %q is not a number", r.URL.Query().Get("port"))
	}
	if err != nil {
		errdefs.Write(w, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err))
		return
	}
	target, err := dialLoopback(r.Context(), port)
	if err != nil {
		errdefs.Write(w, err)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		target.Close()
		errdefs.Write(w, fmt.Errorf("tunnel: %w", err))
		return
	}
	// The daemon writes nothing before the answer, but whatever it might
	// have sent along is the app's.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := target.Write(b); err != nil {
			conn.Close()
			target.Close()
			return
		}
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+tunnelProtocol+"\r\n\r\n"); err != nil {
		conn.Close()
		target.Close()
		return
	}
	splice(conn, target)
}

// dialLoopback connects to port on the sandbox's loopback: 127.0.0.1, and
// ::1 for servers that listen on IPv6 only (Node's "localhost" does).
func dialLoopback(ctx context.Context, port int) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, tunnelDialTimeout)
	defer cancel()
	var d net.Dialer
	p := strconv.Itoa(port)
	c, err := d.DialContext(ctx, "tcp4", "127.0.0.1:"+p)
	if err == nil {
		return c, nil
	}
	if c6, err6 := d.DialContext(ctx, "tcp6", "[::1]:"+p); err6 == nil {
		return c6, nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("%w: nothing is listening on port %d inside the sandbox; start the server (on 0.0.0.0, 127.0.0.1 or ::) and retry",
			errdefs.ErrPortNotListening, port)
	}
	return nil, fmt.Errorf("%w: connecting to port %d inside the sandbox: %v", errdefs.ErrPortNotListening, port, err)
}

// splice copies both ways until both directions are done. The end of one
// direction is passed on as a half-close, so request/response protocols
// finish cleanly; an error in either direction closes both at once.
func splice(a, b net.Conn) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		// io.Copy between TCP and unix sockets uses splice(2) on Linux.
		_, err := io.Copy(dst, src)
		if err != nil {
			closeBoth()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			if cw.CloseWrite() == nil {
				return
			}
		}
		closeBoth()
	}
	wg.Add(2)
	go pipe(b, a)
	pipe(a, b)
	wg.Wait()
	closeBoth()
}

// headerHasToken reports whether a comma-separated header contains token,
// ignoring case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}
