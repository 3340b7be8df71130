package ingest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"strings"
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
// gridbell's own credential (may subscribe under the prefix) and the ingest
// credentials (may publish under it). Empty Ingest = anyone may do anything.
type BrokerAuth struct {
	Prefix     string
	Subscriber Credential
	Ingest     Credentials
}

// EmbeddedBrokerAuth returns the BrokerAuth of c and the MQTTConfig
// gridbell's own client uses with it: with ingest credentials and no
// mqtt.username, gridbell gets a random password of its own for this run.
func EmbeddedBrokerAuth(c MQTTConfig) (BrokerAuth, MQTTConfig, error) {
	c.Defaults()
	if !c.EmbeddedAuth.On() {
		return BrokerAuth{}, c, nil
	}
	if c.Username == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return BrokerAuth{}, c, fmt.Errorf("cannot make a broker password: %w", err)
		}
		c.Username, c.Password = "gridbell", secret.String(hex.EncodeToString(b))
	}
	return BrokerAuth{Prefix: c.TopicPrefix, Subscriber: Credential{Username: c.Username, Password: c.Password},
		Ingest: c.EmbeddedAuth.Ingest}, c, nil
}

// Roles of a client of the embedded broker.
const (
	roleNone = iota
	roleSubscriber
	roleIngest
)

// authHook is the embedded broker's mochi hook: it refuses anonymous
// clients and wrong passwords, lets ingest clients only publish under the
// prefix and gridbell's own client only subscribe under it.
type authHook struct {
	mochi.HookBase
	auth BrokerAuth
	log  zerolog.Logger
	thr  *logging.Throttle
}

func newAuthHook(auth BrokerAuth, log zerolog.Logger) *authHook {
	auth.Prefix = strings.TrimSuffix(auth.Prefix, "/")
	return &authHook{auth: auth, log: log, thr: &logging.Throttle{Period: 10 * time.Second}}
}

func (h *authHook) ID() string { return "gridbell-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

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
// without an ACL check).
func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	role := h.role(pk.Connect.Username, pk.Connect.Password)
	why := ""
	switch {
	case role == roleNone && len(pk.Connect.Username) == 0:
		why = "anonymous client"
	case role == roleNone:
		why = "wrong username or password"
	case pk.Connect.WillFlag && !h.allowed(role, pk.Connect.WillTopic, true):
		why = "will on a topic the client may not publish on"
	default:
		return true
	}
	if ok, held := h.thr.Allow(); ok {
		h.log.Warn().Str("remote", cl.Net.Remote).Str("username", string(pk.Connect.Username)).
			Int("suppressed", held).Msg("embedded mqtt broker refused a client: " + why)
	}
	return false
}

// OnACLCheck: ingest clients publish under the prefix, gridbell subscribes
// under it (also through $share); nobody else does anything. A client got
// here only past OnConnectAuthenticate, and usernames are unique across
// roles (validate), so the username tells the role. It must: mochi checks
// deliveries to an offline persistent session too, whose client it
// restored from its state file with the username and no password.
func (h *authHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
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
