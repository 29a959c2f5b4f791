package server

import (
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

// opDoc documents one route in the OpenAPI document. The document is built
// from the route table and the api types by reflection, so it cannot drift
// from the code.
type opDoc struct {
	summary  string
	request  any    // zero value of the JSON request body type, or nil
	response any    // zero value of the JSON response body type, or nil
	status   int    // success status; 200 if zero
	stream   string // non-empty: the success body is this content type
	query    []param
}

type param struct {
	name, typ, desc string
}

var docs = map[string]opDoc{
	"GET /healthz":         {summary: "Liveness of the daemon (no authentication).", response: api.Health{}},
	"GET /metrics":         {summary: "Prometheus metrics.", stream: "text/plain"},
	"GET /v1/openapi.json": {summary: "This document."},
	"GET /v1/sandboxes":    {summary: "List sandboxes.", response: api.SandboxList{}},
	"PUT /v1/sandboxes/{id}": {summary: "Create (and start) a sandbox, or return it if it exists with the same options (200). 201 when created; 409 CONFLICT if it exists with different options.",
		request: api.CreateSandboxRequest{}, response: api.Sandbox{}, status: http.StatusCreated},
	"GET /v1/sandboxes/{id}":       {summary: "Get a sandbox. Never creates or wakes it; 404 SANDBOX_NOT_FOUND if absent.", response: api.Sandbox{}},
	"DELETE /v1/sandboxes/{id}":    {summary: "Destroy a sandbox and everything it owns. Idempotent.", status: http.StatusNoContent},
	"POST /v1/sandboxes/{id}/stop": {summary: "Stop a sandbox now, as the idle reaper would. Its id and options stay; the next request starts it again.", response: api.Sandbox{}},
	"POST /v1/sandboxes/{id}/exec": {summary: "Run `bash -c command` in the sandbox, creating or waking it first. A non-zero exit code is a result, not an error.",
		request: api.ExecRequest{}, response: api.ExecResult{}},
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
	for _, rt := range s.routes() {
		key := rt.method + " " + rt.pattern
		d := docs[key]
		op := map[string]any{"summary": d.summary, "operationId": operationID(rt.method, rt.pattern)}
		var params []any
		if strings.Contains(rt.pattern, "{id}") {
			params = append(params, map[string]any{"name": "id", "in": "path", "required": true,
				"description": "Sandbox id: 1-63 of [a-z0-9-], not starting or ending with '-'.",
				"schema":      map[string]any{"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"}})
		}
		for _, q := range d.query {
			params = append(params, map[string]any{"name": q.name, "in": "query", "description": q.desc,
				"schema": map[string]any{"type": q.typ}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if d.request != nil {
			op["requestBody"] = map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": ref(d.request)}}}
		}
		status := d.status
		if status == 0 {
			status = http.StatusOK
		}
		ok := map[string]any{"description": http.StatusText(status)}
		switch {
		case d.response != nil:
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": ref(d.response)}}
		case d.stream != "":
			ok["content"] = map[string]any{d.stream: map[string]any{"schema": map[string]any{"type": "string"}}}
		case rt.pattern == "/v1/openapi.json":
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}
		}
		op["responses"] = map[string]any{strconv.Itoa(status): ok, "default": errResp}
		if !rt.auth {
			op["security"] = []any{}
		}
		p, _ := paths[rt.pattern].(map[string]any)
		if p == nil {
			p = map[string]any{}
			paths[rt.pattern] = p
		}
		p[strings.ToLower(rt.method)] = op
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
