package server

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// opDoc documents one route in the OpenAPI document, which is built from the
// route table and, by reflection, from the api types.
type opDoc struct {
	summary  string
	request  any      // zero value of the JSON request body type, or nil
	rawBody  []string // content types of a raw request body, streamed as is (instead of request)
	response any      // zero value of the JSON response body type, or nil
	status   int      // success status; 200 if zero
	also     []alt    // other success statuses, with the same body as status
	stream   string   // non-empty: the success body is this content type
	sse      string   // non-empty: how to ask for the success body as server-sent events instead, e.g. "Accept: text/event-stream"
	upgrade  string   // non-empty: the route upgrades the connection to this protocol (101); response, status and stream are unused
	headers  []param  // request headers
	query    []param
}

type param struct {
	name, typ, desc string
}

// alt is one more success status of a route and when it is given.
type alt struct {
	status int
	desc   string
}

// anyMethod as a route's method documents it under every method: the route
// forwards whatever it gets.
const anyMethod = "*"

var anyMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// unmuxedRoutes are documented like routes but never registered: ServeHTTP
// answers them before the mux (preview.go). Their handlers are nil.
func (s *Server) unmuxedRoutes() []route {
	return []route{
		{anyMethod, "/preview/{id}/{port}/{token}/{path...}", false, nil, opDoc{
			summary: "Path-based preview URL of an exposed port (POST /v1/sandboxes/{id}/ports returns it): any request, WebSocket upgrades included, " +
				"is proxied to /{path} on that port inside the sandbox. The token in the URL is the credential; no bearer token is needed. " +
				"Without the slash after {token} the answer is 308 to it. The app sees paths without the prefix, so its absolute links miss it; " +
				"the host-based form {port}-{id}-{token}.{previewDomain} and the dedicated listener have no prefix. Available when the daemon serves previews. " +
				"Errors: PREVIEW_NOT_FOUND (404), PREVIEW_GONE (410: unexposed, or the sandbox stopped), PORT_NOT_LISTENING and PREVIEW_UPSTREAM_ERROR (502)."}},
	}
}

var (
	openapiOnce sync.Once
	openapiDoc  map[string]any
)

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	openapiOnce.Do(func() { openapiDoc = s.buildOpenAPI() })
	errdefs.WriteJSON(w, http.StatusOK, openapiDoc)
}

func (s *Server) buildOpenAPI() map[string]any {
	schemas := map[string]any{}
	ref := func(v any) map[string]any {
		return schemaRef(reflect.TypeOf(v), schemas)
	}
	errResp := map[string]any{
		"description": "Error; `code` is stable, `message` says what to fix.",
		"content":     map[string]any{"application/json": map[string]any{"schema": ref(api.Error{})}},
	}
	paths := map[string]any{}
	for _, rt := range append(s.routes(), s.unmuxedRoutes()...) {
		d := rt.doc
		var params []any
		for _, name := range pathParams(rt.pattern) {
			p := map[string]any{"name": name, "in": "path", "required": true, "schema": map[string]any{"type": "string"}}
			if name == "id" {
				p["description"] = "Sandbox id: 1-63 of [a-z0-9-], not starting or ending with '-'."
				p["schema"] = map[string]any{"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"}
			}
			params = append(params, p)
		}
		for _, q := range d.query {
			params = append(params, map[string]any{"name": q.name, "in": "query", "description": q.desc,
				"schema": map[string]any{"type": q.typ}})
		}
		if d.upgrade != "" {
			params = append(params,
				map[string]any{"name": "Connection", "in": "header", "required": true, "description": "Upgrade (with the rest of the " + d.upgrade + " handshake).",
					"schema": map[string]any{"type": "string"}},
				map[string]any{"name": "Upgrade", "in": "header", "required": true, "schema": map[string]any{"type": "string", "const": d.upgrade}})
		}
		for _, h := range d.headers {
			params = append(params, map[string]any{"name": h.name, "in": "header", "description": h.desc,
				"schema": map[string]any{"type": h.typ}})
		}
		var body map[string]any
		switch {
		case d.request != nil:
			body = map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": ref(d.request)}}}
		case d.rawBody != nil:
			content := map[string]any{}
			for _, ct := range d.rawBody {
				content[ct] = map[string]any{"schema": map[string]any{"type": "string", "contentMediaType": ct}}
			}
			body = map[string]any{"description": "Raw bytes, not JSON, streamed through as they arrive; any size.",
				"required": true, "content": content}
		}
		responses := map[string]any{"default": errResp}
		success := func(status int, desc string) {
			if desc == "" {
				desc = http.StatusText(status)
			}
			r := map[string]any{"description": desc}
			content := map[string]any{}
			switch {
			case d.response != nil:
				content["application/json"] = map[string]any{"schema": ref(d.response)}
			case d.stream != "":
				content[d.stream] = map[string]any{"schema": map[string]any{"type": "string"}}
			case rt.pattern == "/v1/openapi.json":
				content["application/json"] = map[string]any{"schema": map[string]any{"type": "object"}}
			}
			if d.sse != "" {
				content["text/event-stream"] = map[string]any{"schema": map[string]any{"type": "string"}}
				r["description"] = desc + "; with " + d.sse + ", server-sent events (text/event-stream) instead."
			}
			if len(content) > 0 {
				r["content"] = content
			}
			responses[strconv.Itoa(status)] = r
		}
		switch {
		case d.upgrade != "":
			responses[strconv.Itoa(http.StatusSwitchingProtocols)] = map[string]any{
				"description": "Switching Protocols: the connection is now a " + d.upgrade + " connection.",
				"headers":     map[string]any{"Upgrade": map[string]any{"schema": map[string]any{"type": "string", "const": d.upgrade}}},
			}
		case rt.method == anyMethod:
			responses["default"] = map[string]any{"description": "Whatever the app answers, passed through; the daemon's own errors are JSON " +
				"{code,message} as elsewhere.", "content": map[string]any{"*/*": map[string]any{}}}
		default:
			status := d.status
			if status == 0 {
				status = http.StatusOK
			}
			success(status, "")
			for _, a := range d.also {
				success(a.status, a.desc)
			}
		}
		// OpenAPI templates have no "..." wildcards: {path...} is {path}.
		key := strings.ReplaceAll(rt.pattern, "...}", "}")
		p, _ := paths[key].(map[string]any)
		if p == nil {
			p = map[string]any{}
			paths[key] = p
		}
		methods := []string{rt.method}
		if rt.method == anyMethod {
			methods = anyMethods
		}
		for _, m := range methods {
			op := map[string]any{"summary": d.summary, "operationId": operationID(m, rt.pattern), "responses": responses}
			if params != nil {
				op["parameters"] = params
			}
			if body != nil {
				op["requestBody"] = body
			} else if rt.method == anyMethod && m != "GET" && m != "HEAD" && m != "OPTIONS" {
				op["requestBody"] = map[string]any{"description": "Passed through to the app.",
					"content": map[string]any{"*/*": map[string]any{}}}
			}
			if !rt.auth {
				op["security"] = []any{}
			}
			p[strings.ToLower(m)] = op
		}
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "sbx API", "version": s.cfg.Version,
			"description": "Isolated Linux sandboxes addressed by name. Every /v1 route needs `Authorization: Bearer <token>`."},
		"paths": paths,
		"components": map[string]any{
			"schemas":         schemas,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
		},
		"security": []any{map[string]any{"bearer": []any{}}},
	}
}

// pathParams returns the wildcard names of a ServeMux pattern, in order
// ("{path...}" gives "path").
func pathParams(pattern string) []string {
	var names []string
	for _, seg := range strings.Split(pattern, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name := strings.TrimSuffix(strings.Trim(seg, "{}"), "...")
			if name != "$" {
				names = append(names, name)
			}
		}
	}
	return names
}

func operationID(method, pattern string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, part := range strings.Split(pattern, "/") {
		part = strings.Trim(part, "{}.")
		if part == "" || part == "v1" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + strings.ReplaceAll(part[1:], ".", ""))
	}
	return b.String()
}

var (
	timeType     = reflect.TypeOf(time.Time{})
	durationType = reflect.TypeOf(api.Duration(0))
	rawJSONType  = reflect.TypeOf(json.RawMessage(nil))
)

// schemaRef returns a JSON schema for t, registering named structs in
// schemas and referring to them.
func schemaRef(t reflect.Type, schemas map[string]any) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawJSONType:
		return map[string]any{"description": "Any JSON value."}
	case t == durationType:
		return map[string]any{"type": "string", "description": "Go duration such as \"90s\" or \"10m\"; a number is seconds."}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint32, reflect.Uint64, reflect.Uint16, reflect.Uint8, reflect.Uint:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": schemaRef(t.Elem(), schemas)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaRef(t.Elem(), schemas)}
	case reflect.Struct:
		name := t.Name()
		if _, done := schemas[name]; !done {
			schemas[name] = nil // placeholder against recursion
			props := map[string]any{}
			var required []string
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				if !f.IsExported() {
					continue
				}
				tag := f.Tag.Get("json")
				if tag == "-" {
					continue
				}
				jname, opts, _ := strings.Cut(tag, ",")
				if jname == "" {
					jname = f.Name
				}
				props[jname] = schemaRef(f.Type, schemas)
				if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
					required = append(required, jname)
				}
			}
			s := map[string]any{"type": "object", "properties": props}
			if len(required) > 0 {
				s["required"] = required
			}
			schemas[name] = s
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}
