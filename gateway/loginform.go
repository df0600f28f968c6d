package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/cloakroom/cloakroom/internal/httpx"
)

// Input limits. A password hash costs memory and time, so oversized
// passwords are refused before they reach it.
const (
	maxLoginBody   = 8 << 10
	maxFormBody    = 4 << 10
	maxUsernameLen = 256
	maxPasswordLen = 1024
)

// Messages shown to people. Failed logins all get the same one, whatever
// the reason, so that they reveal nothing about which accounts exist.
const (
	msgInvalidCredentials = "Invalid username or password."
	msgThrottled          = "Too many attempts. Wait a moment, then try again." // when the wait is unknown; see throttledMessage
	msgUnavailable        = "Signing in is not possible right now. Try again shortly."
)

// loginRequest is the body of POST {auth}/login, as a form or as JSON.
type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Remember bool   `json:"remember"`
	ReturnTo string `json:"return_to"`
}

// badInput is a request the client must fix; its message is safe to show.
func badInput(status int, format string, args ...any) *problem {
	code := "bad_request"
	if status == http.StatusRequestEntityTooLarge {
		code = "too_large"
	}
	return newProblem(status, code, format, args...)
}

// readLogin parses and validates a login body. isJSON says how to answer,
// and is meaningful even when err is not nil.
func readLogin(w http.ResponseWriter, r *http.Request) (req loginRequest, isJSON bool, err error) {
	mediaType, _, mtErr := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mtErr != nil {
		mediaType = ""
	}
	if refused := bodyRefusal(r); refused != nil {
		isForm := mediaType == "application/x-www-form-urlencoded"
		return req, mediaType == "application/json" || !isForm && wantsJSON(r), refused
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	switch mediaType {
	case "application/json":
		isJSON = true
		req, err = decodeLoginJSON(r.Body)
	case "application/x-www-form-urlencoded":
		req, err = decodeLoginForm(r)
	default:
		return req, wantsJSON(r), badInput(http.StatusUnsupportedMediaType,
			"Send the login as application/json or application/x-www-form-urlencoded.")
	}
	if err != nil {
		return req, isJSON, err
	}
	return req, isJSON, validateLogin(req)
}

func decodeLoginJSON(body io.Reader) (loginRequest, error) {
	var req loginRequest
	if p := decodeJSONObject(body, &req); p != nil {
		return req, p
	}
	return req, nil
}

func jsonBodyError(err error) *problem {
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return errTooLarge(tooBig.Limit)
	case errors.Is(err, io.EOF):
		return badInput(http.StatusBadRequest, "The body is empty; send a JSON object.")
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return badInput(http.StatusBadRequest, "The body is not valid JSON.")
	case errors.As(err, &typeErr):
		return badInput(http.StatusBadRequest, "Field %q has the wrong type.", typeErr.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for unknown fields.
		return badInput(http.StatusBadRequest, "Unknown field %s.", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return badInput(http.StatusBadRequest, "The body is not a valid login request.")
}

func decodeLoginForm(r *http.Request) (loginRequest, error) {
	var req loginRequest
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, errTooLarge(tooBig.Limit)
		}
		return req, badInput(http.StatusBadRequest, "The form could not be parsed.")
	}
	for _, field := range []string{"username", "password", "return_to", "remember"} {
		if len(r.PostForm[field]) > 1 {
			return req, badInput(http.StatusBadRequest, "Field %q is given more than once.", field)
		}
	}
	req.Username = r.PostForm.Get("username")
	req.Password = r.PostForm.Get("password")
	req.ReturnTo = r.PostForm.Get("return_to")
	switch strings.ToLower(r.PostForm.Get("remember")) {
	case "", "off", "false", "0":
	case "on", "true", "1":
		req.Remember = true
	default:
		return req, badInput(http.StatusBadRequest, `Field "remember" must be on or off.`)
	}
	return req, nil
}

func validateLogin(req loginRequest) error {
	switch {
	case req.Username == "" || req.Password == "":
		return badInput(http.StatusBadRequest, "Enter a username and a password.")
	case len(req.Username) > maxUsernameLen:
		return badInput(http.StatusBadRequest, "The username is longer than %d bytes.", maxUsernameLen)
	case len(req.Password) > maxPasswordLen:
		return badInput(http.StatusBadRequest, "The password is longer than %d bytes.", maxPasswordLen)
	case !utf8.ValidString(req.Username) || strings.ContainsFunc(req.Username, isControl):
		return badInput(http.StatusBadRequest, "The username contains characters that are not allowed.")
	case !utf8.ValidString(req.Password) || strings.ContainsRune(req.Password, 0):
		return badInput(http.StatusBadRequest, "The password contains characters that are not allowed.")
	case len(req.ReturnTo) > httpx.MaxReturnTo:
		return badInput(http.StatusBadRequest, "return_to is longer than %d bytes.", httpx.MaxReturnTo)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }
