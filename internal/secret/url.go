package secret

import (
	"net/url"
	"regexp"
	"strings"
)

// kvPassword is a password in a key=value DSN ("host=db password=x") or in
// a URL's query (?password=x).
var kvPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)`)

// userinfoPassword is the user:password@ of a URL that does not parse.
var userinfoPassword = regexp.MustCompile(`(//[^/:@\s]*:)[^@\s]*@`)

// MaskURL returns a URL or DSN with its password shown as ***: the
// user:password of a URL (postgres://gridbell:***@db/g, the user kept), a
// password query parameter, or a key=value DSN's password. Anything else
// comes back as it is. Config dumps, logs and error messages print DSNs and
// URLs through it.
func MaskURL(s string) string {
	if s == "" {
		return s
	}
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		if _, has := u.User.Password(); has {
			u.User = url.User(u.User.Username())
			who := u.Scheme + "://" + u.User.String()
			s = strings.Replace(u.String(), who+"@", who+":***@", 1)
		}
		if i := strings.IndexByte(s, '?'); i >= 0 {
			return s[:i] + kvPassword.ReplaceAllString(s[i:], "${1}***")
		}
		return s
	}
	s = userinfoPassword.ReplaceAllString(s, "${1}***@")
	return kvPassword.ReplaceAllString(s, "${1}***")
}
