package httpjson_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloakroom/cloakroom/internal/httpjson"
)

func TestError(t *testing.T) {
	w := httptest.NewRecorder()
	httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", `Try "again" <soon>.`)
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d", w.Code)
	}
	for name, want := range map[string]string{
		"Content-Type": "application/json; charset=utf-8", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
	} {
		if got := w.Header().Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	var got map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got["error"] != "unavailable" || got["message"] != `Try "again" <soon>.` || len(got) != 2 {
		t.Errorf("body %q: %v %v", w.Body, got, err)
	}
	if w.Body.String() != string(httpjson.ErrorBody("unavailable", `Try "again" <soon>.`)) {
		t.Errorf("Error and ErrorBody differ: %q", w.Body)
	}
	want := `{"error":"unavailable","message":"Try \"again\" \u003csoon\u003e."}` + "\n"
	if w.Body.String() != want {
		t.Errorf("body %q, want %q", w.Body, want)
	}
}

func TestWrite(t *testing.T) {
	w := httptest.NewRecorder()
	httpjson.Write(w, http.StatusOK, map[string]any{"n": 1})
	if w.Code != http.StatusOK || w.Body.String() != `{"n":1}`+"\n" || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("%d %q %v", w.Code, w.Body, w.Header())
	}
}
