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
	request  any    // zero value of the JSON request body type, or nil
	response any    // zero value of the JSON response body type, or nil
	status   int    // success status; 200 if zero
	stream   string // non-empty: the success body is this content type
	query    []param
}

type param struct {
	name, typ, desc string
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
		d := rt.doc
		op := map[string]any{"summary": d.summary, "operationId": operationID(rt.method, rt.pattern)}
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
		// OpenAPI templates have no "..." wildcards: {path...} is {path}.
		key := strings.ReplaceAll(rt.pattern, "...}", "}")
		p, _ := paths[key].(map[string]any)
		if p == nil {
			p = map[string]any{}
			paths[key] = p
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
