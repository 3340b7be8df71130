// Package twiliotest is a test server that behaves like Twilio's Messages
// API on an httptest.Server: it creates messages (POST
// /2010-04-01/Accounts/{sid}/Messages.json), lists them newest first with
// the To filter (GET on the same path) and fetches one (GET
// .../Messages/{sid}.json). It checks Basic auth, the form fields and E.164
// numbers the way Twilio does, answers Twilio-shaped JSON, records what it
// received, and can inject Twilio's errors, throttling, slow answers and
// broken connections. Like Twilio, a message whose answer is slow or never
// arrives is created all the same. It also signs webhook requests the way
// Twilio does.
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
// optional Retry-After, and an optional delay before answering. A Fault
// without a Status creates the message and then answers late (Delay) or
// breaks the connection without answering (Hangup).
type Fault struct {
	Status     int
	Code       int
	Message    string
	RetryAfter string
	Delay      time.Duration
	Hangup     bool
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
	lookups  int
	latency  time.Duration
}

// New starts a server for one account.
func New(accountSID, authToken string) *Server {
	s := &Server{AccountSID: accountSID, AuthToken: authToken, byTo: map[string]Fault{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// SetLatency makes every message creation take d before the message
// exists and is answered, as Twilio's API takes a few hundred
// milliseconds.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
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

// Lookups returns how many list and fetch requests were answered.
func (s *Server) Lookups() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups
}

// Count returns how many messages were accepted.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.received)
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	list := "/2010-04-01/Accounts/" + s.AccountSID + "/Messages.json"
	one := strings.TrimSuffix(list, ".json") + "/"
	switch {
	case r.URL.Path == list && r.Method == http.MethodPost, r.URL.Path == list && r.Method == http.MethodGet,
		strings.HasPrefix(r.URL.Path, one) && strings.HasSuffix(r.URL.Path, ".json") && r.Method == http.MethodGet:
	case r.URL.Path == list || strings.HasPrefix(r.URL.Path, one):
		writeError(w, Fault{Status: 405, Code: 20004, Message: "Method not allowed"})
		return
	default:
		writeError(w, Fault{Status: 404, Code: 20404, Message: "The requested resource " + r.URL.Path + " was not found"})
		return
	}
	if u, p, ok := r.BasicAuth(); !ok || u != s.AccountSID || p != s.AuthToken {
		writeError(w, Fault{Status: 401, Code: 20003, Message: "Authenticate"})
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == list:
		s.list(w, r)
	case r.Method == http.MethodGet:
		s.fetch(w, strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, one), ".json"))
	default:
		s.create(w, r)
	}
}

// list answers a page of messages, newest first, filtered by To.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	to := r.URL.Query().Get("To")
	size, _ := strconv.Atoi(r.URL.Query().Get("PageSize"))
	if size <= 0 || size > 1000 {
		size = 50
	}
	s.mu.Lock()
	s.lookups++
	var page []map[string]any
	for i := len(s.received) - 1; i >= 0 && len(page) < size; i-- {
		if m := s.received[i]; to == "" || m.To == to {
			page = append(page, messageJSON(s.AccountSID, m))
		}
	}
	s.mu.Unlock()
	if page == nil {
		page = []map[string]any{}
	}
	uri := r.URL.RequestURI()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"messages": page, "page": 0, "page_size": size, "start": 0,
		"end": max(len(page)-1, 0), "uri": uri, "first_page_uri": uri, "next_page_uri": nil, "previous_page_uri": nil})
}

// fetch answers one message by its sid.
func (s *Server) fetch(w http.ResponseWriter, sid string) {
	s.mu.Lock()
	s.lookups++
	var found *Received
	for i := range s.received {
		if s.received[i].SID == sid {
			m := s.received[i]
			found = &m
		}
	}
	s.mu.Unlock()
	if found == nil {
		writeError(w, Fault{Status: 404, Code: 20404, Message: "The requested resource was not found"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(messageJSON(s.AccountSID, *found))
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		writeError(w, Fault{Status: 400, Code: 20001, Message: "Bad form"})
		return
	}
	m := Received{To: r.PostForm.Get("To"), From: r.PostForm.Get("From"), Body: r.PostForm.Get("Body"),
		MessagingServiceSID: r.PostForm.Get("MessagingServiceSid"), StatusCallback: r.PostForm.Get("StatusCallback")}
	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()
	time.Sleep(latency)
	f, faulty := s.fault(m.To)
	if faulty {
		time.Sleep(f.Delay)
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
	// Created: what follows only delays or loses the answer.
	time.Sleep(f.Delay)
	if f.Hangup {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
			return
		}
	}
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
	return f, ok && f.Status != 0
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
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(messageJSON(account, m))
}

func messageJSON(account string, m Received) map[string]any {
	now := m.At.UTC().Format(time.RFC1123Z)
	var svc any
	if m.MessagingServiceSID != "" {
		svc = m.MessagingServiceSID
	}
	return map[string]any{
		"sid": m.SID, "account_sid": account, "to": m.To, "from": m.From, "messaging_service_sid": svc,
		"body": m.Body, "status": "queued", "num_segments": "1", "num_media": "0", "direction": "outbound-api",
		"api_version": "2010-04-01", "price": nil, "price_unit": "USD", "error_code": nil, "error_message": nil,
		"date_created": now, "date_updated": now, "date_sent": nil,
		"uri": "/2010-04-01/Accounts/" + account + "/Messages/" + m.SID + ".json",
	}
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
