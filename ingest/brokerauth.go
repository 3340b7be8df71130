package ingest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/gridbell/gridbell/internal/logging"
	"github.com/gridbell/gridbell/internal/secret"
)

// Credential is one MQTT username and password.
type Credential struct {
	Username string        `yaml:"username"`
	Password secret.String `yaml:"password"`
}

// Credentials is a list of credentials. From the environment it reads
// USER:PASSWORD items separated by commas
// (GRIDBELL_MQTT_EMBEDDED_AUTH_INGEST=headend:s3cret-pass).
type Credentials []Credential

// UnmarshalText reads USER:PASSWORD,USER:PASSWORD.
func (c *Credentials) UnmarshalText(b []byte) error {
	var out Credentials
	for i, item := range strings.Split(string(b), ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		user, pass, ok := strings.Cut(item, ":")
		if !ok {
			return fmt.Errorf("item %d is not USER:PASSWORD", i+1)
		}
		out = append(out, Credential{Username: user, Password: secret.String(pass)})
	}
	*c = out
	return nil
}

// EmbeddedAuth says who may use the embedded broker. With no ingest
// credentials the broker takes anonymous clients, which MQTTConfig.Validate
// allows only on a loopback embedded_listen.
type EmbeddedAuth struct {
	// Ingest are the head-ends' and concentrators' credentials: they alone
	// may publish, and only under the topic prefix; they may not subscribe.
	Ingest Credentials `yaml:"ingest"`
}

// On reports whether the embedded broker refuses anonymous clients.
func (a EmbeddedAuth) On() bool { return len(a.Ingest) > 0 }

// minBrokerPassword is the shortest password the embedded broker takes.
const minBrokerPassword = 12

// validate checks the credentials; self is gridbell's own username.
func (a EmbeddedAuth) validate(self string) error {
	seen := map[string]bool{self: self != ""}
	for i, c := range a.Ingest {
		switch {
		case c.Username == "":
			return fmt.Errorf("mqtt.embedded_auth.ingest item %d has no username", i+1)
		case seen[c.Username]:
			return fmt.Errorf("mqtt.embedded_auth.ingest: username %q is listed twice or is also mqtt.username", c.Username)
		case len(c.Password.Reveal()) < minBrokerPassword:
			return fmt.Errorf("mqtt.embedded_auth.ingest: the password of %q is shorter than %d characters", c.Username, minBrokerPassword)
		}
		seen[c.Username] = true
	}
	return nil
}

// isLoopback reports whether listen ("host:port") binds a loopback address
// only. An empty host binds every interface.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// BrokerAuth is what StartBroker needs to check clients: the topic prefix,
// gridbell's own credential (may subscribe under the prefix) and client id,
// and the ingest credentials (may publish under it). Empty Ingest = anyone
// may do anything, except connect with ClientID: that id is gridbell's and
// takes only the Subscriber credential, whatever Ingest holds.
type BrokerAuth struct {
	Prefix     string
	Subscriber Credential
	ClientID   string
	Ingest     Credentials
}

// EmbeddedBrokerAuth returns the BrokerAuth of c and the MQTTConfig
// gridbell's own client uses with it: with no mqtt.username, gridbell gets
// a random password of its own for this run. With or without ingest
// credentials, gridbell's client id then takes only gridbell's credential,
// so no other client can take its session over (which would silence
// intake).
func EmbeddedBrokerAuth(c MQTTConfig) (BrokerAuth, MQTTConfig, error) {
	c.Defaults()
	if c.Username == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return BrokerAuth{}, c, fmt.Errorf("cannot make a broker password: %w", err)
		}
		c.Username, c.Password = "gridbell", secret.String(hex.EncodeToString(b))
	}
	return BrokerAuth{Prefix: c.TopicPrefix, Subscriber: Credential{Username: c.Username, Password: c.Password},
		ClientID: c.ClientID, Ingest: c.EmbeddedAuth.Ingest}, c, nil
}

// Roles of a client of the embedded broker.
const (
	roleNone = iota
	roleSubscriber
	roleIngest
)

// authHook is the embedded broker's mochi hook. With ingest credentials it
// refuses anonymous clients and wrong passwords, lets ingest clients only
// publish under the prefix and gridbell's own client only subscribe under
// it, and binds a client id to the username of its connection: a client id
// in use takes no other username.
// Always, gridbell's client id takes gridbell's credential only.
//
// It also mends a race in mochi's session takeover (see OnDisconnect) and
// tells a watcher of traffic under the prefix (see Broker.Watch).
type authHook struct {
	mochi.HookBase
	auth    BrokerAuth
	srv     *mochi.Server // set by StartBroker before it serves
	log     zerolog.Logger
	thr     *logging.Throttle
	idThr   *logging.Throttle // refused claims of gridbell's client id
	taking  sync.Map          // *mochi.Client being taken over → struct{}
	estab   sync.Map          // client id → *establishing, while a session of it is set up
	traffic atomic.Pointer[func()]
}

func newAuthHook(auth BrokerAuth, log zerolog.Logger) *authHook {
	auth.Prefix = strings.TrimSuffix(auth.Prefix, "/")
	return &authHook{auth: auth, log: log, thr: &logging.Throttle{Period: 10 * time.Second},
		idThr: &logging.Throttle{Period: 10 * time.Second}}
}

func (h *authHook) ID() string { return "gridbell-auth" }

func (h *authHook) Provides(b byte) bool {
	switch b {
	case mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnSessionEstablish, mochi.OnSessionEstablished,
		mochi.OnDisconnect, mochi.OnPublished:
		return true
	}
	return false
}

// open reports whether the broker takes anonymous clients (no ingest
// credentials).
func (h *authHook) open() bool { return len(h.auth.Ingest) == 0 }

// role returns the role of username with password, or roleNone.
func (h *authHook) role(user, pass []byte) int {
	ok := func(c Credential) bool {
		return len(user) > 0 && string(user) == c.Username &&
			subtle.ConstantTimeCompare(pass, []byte(c.Password.Reveal())) == 1
	}
	if ok(h.auth.Subscriber) {
		return roleSubscriber
	}
	for _, c := range h.auth.Ingest {
		if ok(c) {
			return roleIngest
		}
	}
	return roleNone
}

// OnConnectAuthenticate takes a client with a known username and password
// whose will, if any, it would be allowed to publish (mochi sends wills
// without an ACL check), and whose client id is not bound to another
// username. gridbell's own client id takes gridbell's credential only: a
// client claiming it is refused and logged as an error, since taking
// gridbell's session over would silence meter intake.
func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	user := pk.Connect.Username
	role := h.role(user, pk.Connect.Password)
	why := ""
	switch {
	case h.auth.ClientID != "" && cl.ID == h.auth.ClientID && role != roleSubscriber:
		if ok, held := h.idThr.Allow(); ok {
			h.log.Error().Str("remote", cl.Net.Remote).Str("username", string(user)).Str("client_id", cl.ID).
				Int("suppressed", held).Msg("embedded mqtt broker refused a client claiming gridbell's own client id (it would take over gridbell's session and silence intake)")
		}
		return false
	case role == roleNone && h.open() && (h.auth.Subscriber.Username == "" || string(user) != h.auth.Subscriber.Username):
		return true // anonymous broker: anyone, under any other id
	case role == roleNone && len(user) == 0:
		why = "anonymous client"
	case role == roleNone:
		why = "wrong username or password"
	case pk.Connect.WillFlag && !h.allowed(role, pk.Connect.WillTopic, true):
		why = "will on a topic the client may not publish on"
	case !h.open() && role != roleSubscriber && h.boundElsewhere(cl.ID, string(user)):
		why = "client id in use by another username"
	default:
		return true
	}
	if ok, held := h.thr.Allow(); ok {
		h.log.Warn().Str("remote", cl.Net.Remote).Str("username", string(user)).Str("client_id", cl.ID).
			Int("suppressed", held).Msg("embedded mqtt broker refused a client: " + why)
	}
	return false
}

// boundElsewhere reports whether client id is held by a connected client
// of a username other than user. A kept session of a client gone is not
// binding: an ingest client's holds nothing (it subscribes to nothing), and
// a renamed username must not lock its client out.
func (h *authHook) boundElsewhere(id, user string) bool {
	if h.srv == nil {
		return false
	}
	ex, ok := h.srv.Clients.Get(id)
	return ok && !ex.Closed() && string(ex.Properties.Username) != user
}

// establishing is a session being set up for a client.
type establishing struct {
	cl   *mochi.Client
	done chan struct{} // closed once it is set up (or failed)
}

// OnSessionEstablish runs before mochi hands an existing session of the
// same client id over to cl. mochi does not order two connections of one
// client id: each takes the session from the client registered when it
// looks, and the one registered last wins, while the other stays connected
// and subscribed in its own view and is delivered nothing (a client that
// connects with gridbell's id as gridbell reconnects at once). So it waits
// (up to takeoverWait) until no other session of the id is being set up.
// Then it marks the existing client as being taken over (see OnDisconnect)
// and logs a takeover of gridbell's own session.
func (h *authHook) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	if h.srv == nil {
		return
	}
	me := &establishing{cl: cl, done: make(chan struct{})}
	for {
		v, busy := h.estab.LoadOrStore(cl.ID, me)
		if !busy {
			break
		}
		t := time.NewTimer(takeoverWait)
		select {
		case <-v.(*establishing).done:
		case <-t.C:
			h.estab.CompareAndDelete(cl.ID, v) // failed without telling
		}
		t.Stop()
	}
	ex, ok := h.srv.Clients.Get(cl.ID)
	if !ok || ex == cl {
		return
	}
	h.taking.Store(ex, struct{}{})
	if cl.ID == h.auth.ClientID && !ex.Closed() {
		h.log.Warn().Str("client_id", cl.ID).Str("old_remote", ex.Net.Remote).Str("new_remote", cl.Net.Remote).
			Msg("gridbell's mqtt session taken over by a new connection with its credential (its reconnect over a stale connection, or a second gridbell with the same credential)")
	}
}

// OnSessionEstablished: cl is registered; the next connection of its id
// may go ahead.
func (h *authHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	h.established(cl)
}

func (h *authHook) established(cl *mochi.Client) {
	if v, ok := h.estab.Load(cl.ID); ok && v.(*establishing).cl == cl {
		h.estab.CompareAndDelete(cl.ID, v)
		close(v.(*establishing).done)
	}
}

// takeoverWait bounds how long a connection waits for another of the same
// client id to be set up, and OnDisconnect for a takeover to finish.
const takeoverWait = 5 * time.Second

// OnDisconnect waits, for a client whose session is being taken over,
// until mochi has marked it taken over. mochi marks it only after removing
// its subscriptions (slow with the state file), and meanwhile the client's
// own goroutine, on a clean session, deletes the client id's registration
// and subscriptions: those of the new client by then, which stays
// connected and subscribed in its own view and is delivered nothing. (This
// is what silenced intake after a client connected once with gridbell's
// id.) Hooks run before that deletion, so waiting here orders it after the
// mark, and mochi then leaves the new client alone.
func (h *authHook) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	h.established(cl) // if it failed while being set up
	if _, ok := h.taking.LoadAndDelete(cl); !ok {
		return
	}
	for deadline := time.Now().Add(takeoverWait); !cl.IsTakenOver() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// OnPublished tells the watcher (Broker.Watch) of a message under the prefix.
func (h *authHook) OnPublished(_ *mochi.Client, pk packets.Packet) {
	if f := h.traffic.Load(); f != nil && (h.auth.Prefix == "" || strings.HasPrefix(pk.TopicName, h.auth.Prefix+"/")) {
		(*f)()
	}
}

// OnACLCheck: ingest clients publish under the prefix, gridbell subscribes
// under it (also through $share); nobody else does anything. A client got
// here only past OnConnectAuthenticate, and usernames are unique across
// roles (validate), so the username tells the role. It must: mochi checks
// deliveries to an offline persistent session too, whose client it
// restored from its state file with the username and no password.
func (h *authHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if h.open() {
		return true
	}
	return h.allowed(h.roleOf(string(cl.Properties.Username)), topic, write)
}

func (h *authHook) roleOf(user string) int {
	if user == "" {
		return roleNone
	}
	if user == h.auth.Subscriber.Username {
		return roleSubscriber
	}
	for _, c := range h.auth.Ingest {
		if c.Username == user {
			return roleIngest
		}
	}
	return roleNone
}

func (h *authHook) allowed(role int, topic string, write bool) bool {
	if !write && strings.HasPrefix(topic, "$share/") {
		if _, rest, ok := strings.Cut(topic[len("$share/"):], "/"); ok {
			topic = rest
		}
	}
	if h.auth.Prefix != "" && !strings.HasPrefix(topic, h.auth.Prefix+"/") {
		return false
	}
	switch role {
	case roleIngest:
		return write
	case roleSubscriber:
		return !write
	}
	return false
}

// EmbeddedPublishURL is the URL a publisher on this machine (the simulator,
// the demo) reaches the embedded broker with: with ingest credentials, the
// first of them is in it. Log it only with url.URL.Redacted.
func (c MQTTConfig) EmbeddedPublishURL() string {
	u := url.URL{Scheme: "tcp", Host: c.EmbeddedListen}
	if c.EmbeddedAuth.On() {
		cr := c.EmbeddedAuth.Ingest[0]
		u.User = url.UserPassword(cr.Username, cr.Password.Reveal())
	}
	return u.String()
}
