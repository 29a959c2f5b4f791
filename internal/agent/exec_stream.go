package agent

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// eventStream writes server-sent events, one JSON object per event, flushing
// each at once so it reaches the client as it happens. It is safe for
// concurrent use; events keep the order in which send was called.
type eventStream struct {
	mu     sync.Mutex
	w      http.ResponseWriter
	rc     *http.ResponseController
	failed bool // the client is gone; later events are dropped
	buf    []byte
}

// newEventStream sends the response header of an event stream.
func newEventStream(w http.ResponseWriter) *eventStream {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &eventStream{w: w, rc: http.NewResponseController(w)}
	_ = s.rc.Flush()
	return s
}

// send writes one event. It reports false once the client is gone.
func (s *eventStream) send(event string, v any) bool {
	data, err := json.Marshal(v)
	if err != nil {
		data, _ = json.Marshal(api.Error{Code: api.CodeInternal, Message: err.Error()})
		event = api.EventError
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed {
		return false
	}
	s.buf = append(s.buf[:0], "event: "...)
	s.buf = append(s.buf, event...)
	s.buf = append(s.buf, "\ndata: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
	return s.flush()
}

// comment writes a keep-alive comment line.
func (s *eventStream) comment() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed {
		return false
	}
	s.buf = append(s.buf[:0], ": keep-alive\n\n"...)
	return s.flush()
}

func (s *eventStream) flush() bool {
	if _, err := s.w.Write(s.buf); err != nil {
		s.failed = true
		return false
	}
	if err := s.rc.Flush(); err != nil {
		s.failed = true
		return false
	}
	return true
}

// sendError ends a stream with an error event.
func (s *eventStream) sendError(err error) {
	_, body := errdefs.Classify(err)
	s.send(api.EventError, body)
}

// keepAlive writes a comment every interval until stop is closed, so that
// proxies and clients can tell a quiet stream from a dead one.
func (s *eventStream) keepAlive(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if !s.comment() {
				return
			}
		}
	}
}

// outputEvent renders a chunk of output: text when it is valid UTF-8,
// base64 otherwise.
func outputEvent(p []byte) api.OutputEvent {
	if utf8.Valid(p) {
		return api.OutputEvent{Data: string(p)}
	}
	return api.OutputEvent{Data: base64.StdEncoding.EncodeToString(p), Base64: true}
}

// streamSink sends output as stdout and stderr events. A character split
// across two reads is held back until its end arrives, so that text stays
// text; what is held at the end goes out as it is.
type streamSink struct {
	sse      *eventStream
	mu       sync.Mutex
	carry    [2][]byte
	detached bool
}

func (s *streamSink) write(stream int, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.detached {
		return
	}
	buf := p
	if len(s.carry[stream]) > 0 {
		buf = append(s.carry[stream], p...)
		s.carry[stream] = nil
	}
	if cut := incompleteTail(buf); cut > 0 {
		s.carry[stream] = append([]byte(nil), buf[len(buf)-cut:]...)
		buf = buf[:len(buf)-cut]
	}
	if len(buf) > 0 {
		s.sse.send(streamNames[stream], outputEvent(buf))
	}
}

// detach flushes held bytes and ends delivery.
func (s *streamSink) detach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.detached {
		return
	}
	for i, c := range s.carry {
		if len(c) > 0 {
			s.sse.send(streamNames[i], outputEvent(c))
		}
	}
	s.detached = true
}

// incompleteTail returns how many bytes at the end of p start a UTF-8
// character that is not complete yet (0-3).
func incompleteTail(p []byte) int {
	for i := 1; i <= 3 && i <= len(p); i++ {
		b := p[len(p)-i]
		if b < 0x80 {
			return 0 // ASCII: nothing pending
		}
		if utf8.RuneStart(b) {
			if !utf8.FullRune(p[len(p)-i:]) {
				return i
			}
			return 0
		}
	}
	return 0
}

// streamExec runs c and streams its events. complete is sent only after
// the command exited; if it cannot be run or is cut short by the agent
// shutting down, the stream ends with an error event.
func (a *Agent) streamExec(w http.ResponseWriter, r *http.Request, c *command) {
	if c.session != "" {
		// An unknown session is a plain 404, before the stream begins.
		if _, err := a.sessions.get(c.session); err != nil {
			errdefs.Write(w, err)
			return
		}
	}
	sse := newEventStream(w)
	stop := make(chan struct{})
	defer close(stop)
	go sse.keepAlive(a.cfg.KeepAlive, stop)
	sink := &streamSink{sse: sse}
	o, err := a.run(r.Context(), c, sink, func(pid int) {
		sse.send(api.EventStart, api.ExecStartEvent{Pid: pid})
	})
	sink.detach()
	if err != nil {
		sse.sendError(err) // dropped if the client is gone
		return
	}
	sse.send(api.EventComplete, api.ExecCompleteEvent{ExitCode: o.exitCode, Success: o.exitCode == 0 && !o.timedOut,
		DurationMs: o.duration.Milliseconds(), TimedOut: o.timedOut, OOMKilled: o.oomKilled})
}
