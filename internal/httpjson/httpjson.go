// Package httpjson writes the JSON answers of the gateway's handlers
// (gateway, vault, oidcbff), so that every JSON error has the same shape,
// {"error": code, "message": message}, and the same headers: a JSON
// content type, nosniff, and no-store, since answers about a session must
// not be cached.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// SetHeaders sets the headers of a JSON answer on h.
func SetHeaders(h http.Header) {
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
}

// Write answers status with v encoded as JSON (HTML characters escaped).
func Write(w http.ResponseWriter, status int, v any) {
	SetHeaders(w.Header())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error answers status with {"error": code, "message": message}.
func Error(w http.ResponseWriter, status int, code, message string) {
	SetHeaders(w.Header())
	w.WriteHeader(status)
	_, _ = w.Write(ErrorBody(code, message))
}

// errorBody is the shape of every JSON error.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// ErrorBody returns the body Error writes, for code that builds an
// http.Response instead of writing to a ResponseWriter.
func ErrorBody(code, message string) []byte {
	b, err := json.Marshal(errorBody{code, message})
	if err != nil {
		panic("httpjson: encoding two strings: " + err.Error()) // cannot happen
	}
	return append(b, '\n')
}
