// Package twiliotest is a test server that behaves like Twilio's Messages
// API (POST /2010-04-01/Accounts/{sid}/Messages.json) on an httptest.Server:
// it checks Basic auth, the form fields and E.164 numbers the way Twilio
// does, answers Twilio-shaped JSON, records what it received, and can
// inject Twilio's errors, throttling and slow answers. It also signs
// webhook requests the way Twilio does.
package twiliotest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Received is one message the server accepted.
type Received struct {
	SID, To, From, MessagingServiceSID, Body, StatusCallback string
	At                                                       time.Time
}

// Fault is an injected answer: an HTTP status with a Twilio error code, an
// optional Retry-After, and an optional delay before answering.
type Fault struct {
	Status     int
	Code       int
	Message    string
	RetryAfter string
	Delay      time.Duration
}

// Twilio's errors that notify handles.
var (
	InvalidTo    = Fault{Status: 400, Code: 21211, Message: "The 'To' number is not a valid phone number."}
	Unsubscribed = Fault{Status: 400, Code: 21610, Message: "Attempt to send to unsubscribed recipient"}
	NotMobile    = Fault{Status: 400, Code: 21614, Message: "'To' number is not a valid mobile number"}
	TooMany      = Fault{Status: 429, Code: 20429, Message: "Too Many Requests", RetryAfter: "1"}
	ServerError  = Fault{Status: 500, Code: 20500, Message: "Internal Server Error"}
)

// Server is a fake Twilio.
type Server struct {
	*httptest.Server
	AccountSID, AuthToken string

	mu       sync.Mutex // guards the fields below
	received []Received
	byTo     map[string]Fault
	next     []Fault
}

// New starts a server for one account.
func New(accountSID, authToken string) *Server {
	s := &Server{AccountSID: accountSID, AuthToken: authToken, byTo: map[string]Fault{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// FailTo answers every message to `to` with f.
func (s *Server) FailTo(to string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byTo[to] = f
}

// FailNext answers the next n requests with f.
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.next = append(s.next, f)
	}
}

// Received returns the accepted messages in arrival order.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}

// Count returns how many messages were accepted.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.received)
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	want := "/2010-04-01/Accounts/" + s.AccountSID + "/Messages.json"
	if r.URL.Path != want {
		writeError(w, Fault{Status: 404, Code: 20404, Message: "The requested resource " + r.URL.Path + " was not found"})
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, Fault{Status: 405, Code: 20004, Message: "Method not allowed"})
		return
	}
	if u, p, ok := r.BasicAuth(); !ok || u != s.AccountSID || p != s.AuthToken {
		writeError(w, Fault{Status: 401, Code: 20003, Message: "Authenticate"})
		return
	}
	if err := r.ParseForm(); err != nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		writeError(w, Fault{Status: 400, Code: 20001, Message: "Bad form"})
		return
	}
	m := Received{To: r.PostForm.Get("To"), From: r.PostForm.Get("From"), Body: r.PostForm.Get("Body"),
		MessagingServiceSID: r.PostForm.Get("MessagingServiceSid"), StatusCallback: r.PostForm.Get("StatusCallback")}
	f, faulty := s.fault(m.To)
	if f.Delay > 0 {
		time.Sleep(f.Delay)
	}
	if faulty {
		writeError(w, f)
		return
	}
	if f := validate(m); f != nil {
		writeError(w, *f)
		return
	}
	m.SID, m.At = newSID(), time.Now()
	s.mu.Lock()
	s.received = append(s.received, m)
	s.mu.Unlock()
	writeMessage(w, s.AccountSID, m)
}

// fault picks the injected answer for a request to `to`, if any; one
// without a status only delays the answer.
func (s *Server) fault(to string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.next) > 0 {
		f := s.next[0]
		s.next = s.next[1:]
		return f, f.Status != 0
	}
	f, ok := s.byTo[to]
	return f, ok
}

// validate checks fields the way Twilio does.
func validate(m Received) *Fault {
	switch {
	case m.To == "":
		return &Fault{Status: 400, Code: 21604, Message: "A 'To' phone number is required."}
	case !e164.MatchString(m.To):
		f := InvalidTo
		return &f
	case m.Body == "":
		return &Fault{Status: 400, Code: 21602, Message: "Message body is required."}
	case len([]rune(m.Body)) > 1600:
		return &Fault{Status: 400, Code: 21617, Message: "The concatenated message body exceeds the 1600 character limit."}
	case m.From == "" && m.MessagingServiceSID == "":
		return &Fault{Status: 400, Code: 21603, Message: "A 'From' or 'MessagingServiceSid' parameter is required to send a message"}
	case m.From != "" && !e164.MatchString(m.From) && !strings.HasPrefix(m.From, "MG"):
		return &Fault{Status: 400, Code: 21212, Message: "The 'From' number is not a valid phone number."}
	case m.MessagingServiceSID != "" && !strings.HasPrefix(m.MessagingServiceSID, "MG"):
		return &Fault{Status: 400, Code: 21701, Message: "The Messaging Service Sid is invalid."}
	}
	if m.StatusCallback != "" {
		if u, err := url.Parse(m.StatusCallback); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return &Fault{Status: 400, Code: 21609, Message: "Invalid StatusCallback"}
		}
	}
	return nil
}

func writeError(w http.ResponseWriter, f Fault) {
	w.Header().Set("Content-Type", "application/json")
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	w.WriteHeader(f.Status)
	json.NewEncoder(w).Encode(map[string]any{"code": f.Code, "message": f.Message,
		"more_info": "https://www.twilio.com/docs/errors/" + strconv.Itoa(f.Code), "status": f.Status})
}

func writeMessage(w http.ResponseWriter, account string, m Received) {
	now := m.At.UTC().Format(time.RFC1123Z)
	var svc any
	if m.MessagingServiceSID != "" {
		svc = m.MessagingServiceSID
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{
		"sid": m.SID, "account_sid": account, "to": m.To, "from": m.From, "messaging_service_sid": svc,
		"body": m.Body, "status": "queued", "num_segments": "1", "num_media": "0", "direction": "outbound-api",
		"api_version": "2010-04-01", "price": nil, "price_unit": "USD", "error_code": nil, "error_message": nil,
		"date_created": now, "date_updated": now, "date_sent": nil,
		"uri": "/2010-04-01/Accounts/" + account + "/Messages/" + m.SID + ".json",
	})
}

func newSID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "SM" + hex.EncodeToString(b)
}

// Sign returns the X-Twilio-Signature Twilio would send for a form POST of
// params to rawURL, signed with authToken.
func Sign(authToken, rawURL string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(rawURL)
	for _, k := range keys {
		b.WriteString(k + params.Get(k))
	}
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
