"""Python runner of the sbx code interpreter.

sbx-agent starts one of these per code context and talks to it over two
pipes, one JSON object per line:

  fd 3 (agent -> runner)  {"type":"init","cwd":..,"env":{..}}  (env: all of it)
                          {"type":"run","id":N,"code":".."}
  fd 4 (runner -> agent)  {"type":"ready"} | {"type":"unavailable","message":..}
                          {"type":"inited"}
                          {"type":"started","id":N}  (the code reached the runner)
                          {"type":"stdout"|"stderr","id":N,"text":..}
                          {"type":"result","id":N,"result":{..}}
                          {"type":"error","id":N,"error":{name,message,traceback}}
                          {"type":"done","id":N,"count":N,"fences":N}

Code runs in an IPython InteractiveShell, so the value of the last
expression, display() and IPython's rich representations (_repr_html_ and
friends) behave as in a notebook. Writes to sys.stdout and sys.stderr travel
as events in order with results; output written to file descriptors 1 and 2
directly (subprocesses, C code) is read by the agent from pipes, and the fence
the runner writes there at the end of a run tells the agent it has all of it.

SIGINT interrupts the running code with KeyboardInterrupt and is ignored
between runs. Python contexts are available when `python3` can import
IPython; NumPy, pandas and Matplotlib are optional.
"""

import base64
import codecs
import io
import json
import os
import signal
import sys
import threading

CMD_FD, EVENT_FD = 3, 4

# Names of the api.CodeResult fields, by MIME type.
MIME_FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "text/latex": "latex",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/json": "json",
    "application/javascript": "javascript",
}


class _State:
    run_id = 0
    running = False  # SIGINT raises KeyboardInterrupt only while true
    sending = False  # ... and not while the main thread writes an event
    pending_interrupt = False


state = _State()
_send_lock = threading.Lock()


def send(msg):
    """Writes one event. An interrupt that arrives meanwhile is held back
    until the line is complete, so the channel never carries half a line."""
    line = (json.dumps(msg, separators=(",", ":"), default=repr) + "\n").encode("ascii")
    main = threading.current_thread() is threading.main_thread()
    with _send_lock:
        if main:
            state.sending = True
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(EVENT_FD, view):]
        finally:
            if main:
                state.sending = False
    if main and state.pending_interrupt:
        state.pending_interrupt = False
        if state.running:
            raise KeyboardInterrupt


def on_sigint(signum, frame):
    if not state.running:
        return
    if state.sending:
        state.pending_interrupt = True
        return
    raise KeyboardInterrupt


class _Buffer(io.RawIOBase):
    """sys.stdout.buffer: bytes are decoded and go the text stream's way."""

    def __init__(self, text):
        self._text = text
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")

    def writable(self):
        return True

    def write(self, b):
        self._text.write(self._dec.decode(bytes(b)))
        return len(b)

    def flush(self):
        self._text.flush()


class OutStream(io.TextIOBase):
    """sys.stdout / sys.stderr: text is sent as events of the current run,
    a line at a time, and at once on flush() or before any other event."""

    def __init__(self, name, fd):
        self._name = name
        self._fd = fd
        self._parts = []
        self._size = 0
        self._lock = threading.RLock()
        self.buffer = _Buffer(self)

    encoding = "utf-8"
    errors = "replace"

    @property
    def name(self):
        return "<%s>" % self._name

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        # Whoever needs a real descriptor (subprocess, faulthandler) writes
        # to the pipe the agent reads.
        return self._fd

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        if s:
            with self._lock:
                self._parts.append(s)
                self._size += len(s)
                if "\n" in s or self._size > 8192:
                    self.flush()
        return len(s)

    def flush(self):
        with self._lock:
            if not self._parts:
                return
            text = "".join(self._parts)
            self._parts.clear()
            self._size = 0
            send({"type": self._name, "id": state.run_id, "text": text})


def flush_streams():
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:
            pass


def to_result(data, main):
    """Turns a MIME bundle into an api.CodeResult."""
    r = {}
    for mime, value in data.items():
        field = MIME_FIELDS.get(mime)
        if field is None or value is None:
            continue
        if field in ("png", "jpeg"):
            if isinstance(value, (bytes, bytearray, memoryview)):
                value = base64.b64encode(bytes(value)).decode("ascii")
            else:
                value = "".join(str(value).split())  # already base64
        elif field == "json":
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                continue  # not representable as JSON; the other forms remain
        elif isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        elif not isinstance(value, str):
            value = str(value)
        r[field] = value
    if main:
        r["isMainResult"] = True
    return r


def publish(data, main):
    result = to_result(data, main)
    if len(result) > (1 if main else 0):
        flush_streams()
        send({"type": "result", "id": state.run_id, "result": result})


# --- Matplotlib -----------------------------------------------------------

BACKEND = "module://sbx_inline"
_shown = set()  # ids of figures displayed in this run as values


def _figure_png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def publish_figures():
    """Displays every open pyplot figure as PNG and closes it, as a
    notebook's inline backend does at plt.show() and at the end of a run."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    try:
        import matplotlib

        if matplotlib.get_backend() != BACKEND:
            return  # the user chose another backend
        for num in plt.get_fignums():
            fig = plt.figure(num)
            if id(fig) in _shown:
                continue
            try:
                publish({"text/plain": repr(fig), "image/png": _figure_png(fig)}, False)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # a broken figure must not break the run
                sys.stderr.write("sbx: could not render figure %s: %s\n" % (num, e))
        plt.close("all")
    finally:
        _shown.clear()


def _png_formatter(fig):
    _shown.add(id(fig))
    return _figure_png(fig)


def _make_backend():
    """The inline backend module: Agg canvases whose show() displays."""
    import types

    from matplotlib.backend_bases import FigureManagerBase
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    mod = types.ModuleType("sbx_inline")
    mod.FigureCanvas = FigureCanvasAgg
    mod.FigureManager = FigureManagerBase

    def show(*args, **kwargs):
        publish_figures()

    mod.show = show
    return mod


class _MatplotlibHook:
    """Selects the inline backend when matplotlib is first imported, unless
    MPLBACKEND says otherwise. Setting MPLBACKEND instead would leak into
    every subprocess, where the backend module does not exist."""

    def find_spec(self, name, path, target=None):
        if name != "matplotlib":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_configure(module):
            exec_module(module)
            if os.environ.get("MPLBACKEND"):
                return
            try:
                sys.modules["sbx_inline"] = _make_backend()
                module.rcParams["backend"] = BACKEND
            except Exception as e:
                sys.stderr.write("sbx: inline figures unavailable: %s\n" % e)

        spec.loader.exec_module = exec_and_configure
        return spec


# --- IPython --------------------------------------------------------------


def make_shell():
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Hook(DisplayHook):
        def start_displayhook(self):
            pass

        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            publish(format_dict, True)

        def finish_displayhook(self):
            pass

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            publish(data, False)

        def clear_output(self, wait=False):
            pass

    class Shell(InteractiveShell):
        def _showtraceback(self, etype, evalue, stb):
            flush_streams()
            name = getattr(etype, "__name__", str(etype))
            # Frames of this runner (the SIGINT handler that raises a
            # timeout's KeyboardInterrupt) are not the user's code.
            here = os.path.abspath(__file__)
            stb = [s for s in stb if here not in s]
            send({"type": "error", "id": state.run_id,
                  "error": {"name": name, "message": str(evalue), "traceback": stb}})

        def enable_gui(self, gui=None):
            pass

        def enable_matplotlib(self, gui=None):
            # %matplotlib [inline]: figures are always captured inline.
            import matplotlib

            if "sbx_inline" not in sys.modules:
                sys.modules["sbx_inline"] = _make_backend()
            matplotlib.use(BACKEND)
            return "inline", BACKEND

    cfg = Config()
    cfg.HistoryManager.enabled = False  # no history database in $HOME
    shell = Shell.instance(config=cfg, displayhook_class=Hook, display_pub_class=Publisher, colors="NoColor")
    fmt = shell.display_formatter.formatters["image/png"]
    fmt.for_type_by_name("matplotlib.figure", "Figure", _png_formatter)
    shell.events.register("post_run_cell", lambda *args: publish_figures())
    from IPython.display import display

    shell.push({"display": display}, interactive=False)
    return shell


def run(shell, msg, fence):
    state.run_id = msg["id"]
    send({"type": "started", "id": state.run_id})
    count = shell.execution_count
    try:
        state.running = True
        try:
            shell.run_cell(msg["code"], store_history=True)
        finally:
            state.running = False
    except KeyboardInterrupt:
        # The interrupt landed in IPython's machinery rather than the code.
        send({"type": "error", "id": state.run_id,
              "error": {"name": "KeyboardInterrupt", "message": "", "traceback": ["KeyboardInterrupt"]}})
    flush_streams()
    fences = 0
    for f, fd in ((sys.__stdout__, 1), (sys.__stderr__, 2)):
        try:
            if f is not None:
                f.flush()
            os.write(fd, fence)
            fences |= fd
        except Exception:
            pass  # the code closed or replaced the descriptor
    send({"type": "done", "id": state.run_id, "count": count, "fences": fences})


def main():
    fence = os.environ.pop("SBX_INTERP_FENCE", "").encode()
    for fd in (CMD_FD, EVENT_FD):
        os.set_inheritable(fd, False)  # subprocesses must not hold them
    signal.signal(signal.SIGINT, on_sigint)
    # Imports resolve from the working directory, not the runner's.
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = ""
    sys.meta_path.insert(0, _MatplotlibHook())
    try:
        shell = make_shell()
    except ImportError as e:
        send({"type": "unavailable",
              "message": "IPython cannot be imported by %s (%s)" % (sys.executable, e)})
        return 3
    sys.stdout = OutStream("stdout", 1)
    sys.stderr = OutStream("stderr", 2)
    send({"type": "ready"})
    with os.fdopen(CMD_FD, "rb") as cmds:
        for line in cmds:
            msg = json.loads(line)
            kind = msg.get("type")
            if kind == "init":
                # The context's whole environment, not additions.
                os.environ.clear()
                os.environ.update(msg.get("env") or {})
                if msg.get("cwd"):
                    os.chdir(msg["cwd"])
                send({"type": "inited"})
            elif kind == "run":
                run(shell, msg, fence)
    return 0


if __name__ == "__main__":
    sys.exit(main())
