package contacts

import (
	"strings"
	"unicode"

	"github.com/nyaruka/phonenumbers"
)

// Reasons the cleaner gives (Contact.Reason).
const (
	reasonEmpty       = "empty"
	reasonPlaceholder = "placeholder"
	reasonTooShort    = "too short"
	reasonTooLong     = "too long"
	reasonNotMobile   = "not a chinese mobile or landline"
	reasonNoAreaCode  = "landline without area code"
	reasonForeign     = "invalid foreign number"
	reasonLandline    = "landline: cannot take sms"
	reasonCleaned     = "cleaned"
	reasonSplit       = "one of several numbers in the field"
)

// maxDigits bounds the digits read from one number: E.164 allows 15.
const maxDigits = 24

// Clean reads one raw phone field as typed by a clerk and returns its
// numbers, cleaned to E.164 (docs/interfaces.md §3). The field is first read as one
// number with its junk stripped; only when that fails is it split on
// "/ , ; 、" or spaces. An empty field gives one Missing contact, a field with
// no usable number one Invalid contact carrying the reason.
func Clean(field string) []Contact {
	if strings.TrimSpace(field) == "" {
		return []Contact{{Raw: field, Verdict: Missing, Reason: reasonEmpty}}
	}
	c := cleanOne(field)
	if usable(c.Verdict) {
		return []Contact{c}
	}
	if parts := cleanParts(field); parts != nil {
		return parts
	}
	return []Contact{c}
}

func usable(v Verdict) bool { return v == Valid || v == Fixed || v == Landline }

// cleanOne reads raw as a single number.
func cleanOne(raw string) Contact {
	var buf [maxDigits]byte
	d, plus, tooLong := digitsOf(trimNoise(raw), &buf)
	c := Contact{Raw: raw}
	switch {
	case tooLong:
		c.Verdict, c.Reason = Invalid, reasonTooLong
		return c
	case len(d) == 0:
		c.Verdict, c.Reason = Invalid, reasonPlaceholder
		return c
	}
	c.Phone, c.Verdict, c.Reason = classify(d, plus)
	if c.Verdict == Valid && raw != c.Phone && !(strings.HasPrefix(c.Phone, "+86") && raw == c.Phone[3:]) {
		c.Verdict, c.Reason = Fixed, reasonCleaned
	}
	return c
}

// extensionMarks start a landline's extension, which SMS has no use for.
var extensionMarks = []string{"转", "分机", "ext", "Ext", "EXT"}

// trimNoise drops what is not part of the number but holds digits: an
// extension ("0755-88881234转8001") and the ".0" a spreadsheet adds to a
// number stored as a float ("13812345678.0").
func trimNoise(s string) string {
	for _, m := range extensionMarks {
		if i := strings.Index(s, m); i > 0 {
			end := len(s) // the extension runs to the next number, if any
			if j := strings.IndexFunc(s[i:], isSeparator); j >= 0 {
				end = i + j
			}
			s = s[:i] + s[end:]
		}
	}
	t := strings.TrimSpace(s)
	for _, suffix := range []string{".0", ".00"} {
		if len(t) > len(suffix) && strings.HasSuffix(t, suffix) {
			return t[:len(t)-len(suffix)]
		}
	}
	return s
}

// digitsOf copies the digits of s (full-width ones too) into buf. plus is
// set when a '+' comes before the first digit.
func digitsOf(s string, buf *[maxDigits]byte) (d []byte, plus, tooLong bool) {
	d = buf[:0]
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
		case r >= '０' && r <= '９':
			r = '0' + (r - '０')
		case (r == '+' || r == '＋') && len(d) == 0:
			plus = true
			continue
		default:
			continue
		}
		if len(d) == maxDigits {
			return d, plus, true
		}
		d = append(d, byte(r))
	}
	return d, plus, false
}

// classify turns the digits of one number into E.164 with a verdict.
// Valid here means usable for SMS; cleanOne decides Valid or Fixed.
func classify(d []byte, plus bool) (string, Verdict, string) {
	switch {
	case allSame(d):
		return "", Invalid, reasonPlaceholder
	case plus:
		return international(d)
	case len(d) > 2 && d[0] == '0' && d[1] == '0':
		return international(d[2:])
	case len(d) == 13 && d[0] == '8' && d[1] == '6' && d[2] == '1':
		return chinese(d[2:], false)
	}
	return chinese(d, false)
}

func international(d []byte) (string, Verdict, string) {
	if len(d) > 2 && d[0] == '8' && d[1] == '6' {
		return chinese(d[2:], true)
	}
	return foreign(d)
}

// chinese classifies a national Chinese number. intl is set when it came
// after +86, where a landline's leading 0 is dropped.
func chinese(n []byte, intl bool) (string, Verdict, string) {
	if allSame(n) {
		return "", Invalid, reasonPlaceholder
	}
	switch {
	case intl && len(n) > 1 && n[0] == '1' && n[1] == '0':
		return landline(n) // Beijing, +86 10 ...
	case len(n) == 12 && n[0] == '0' && n[1] == '1' && n[2] >= '3':
		return mobile(n[1:]) // a trunk 0 before a mobile, as once dialled from another city
	case len(n) > 0 && n[0] == '1':
		return mobile(n)
	case len(n) > 0 && n[0] == '0':
		return landline(n[1:])
	case intl:
		return landline(n)
	case len(n) == 10 && (hasPrefix(n, "400") || hasPrefix(n, "800")):
		return "+86" + string(n), Landline, reasonLandline
	case len(n) <= 8 && len(n) >= 7:
		return "", Invalid, reasonNoAreaCode
	case len(n) < 7:
		return "", Invalid, reasonTooShort
	}
	return "", Invalid, reasonNotMobile
}

func mobile(n []byte) (string, Verdict, string) {
	switch {
	case len(n) < 11:
		return "", Invalid, reasonTooShort
	case len(n) > 11:
		return "", Invalid, reasonTooLong
	case n[1] < '3':
		return "", Invalid, reasonNotMobile
	case allSame(n[3:]) || string(n) == "13800138000":
		return "", Invalid, reasonPlaceholder
	}
	return "+86" + string(n), Valid, ""
}

// landline takes a number without its trunk 0: area code (10, 2x, or three
// digits) and a 7 or 8 digit subscriber number.
func landline(n []byte) (string, Verdict, string) {
	switch {
	case len(n) < 9:
		return "", Invalid, reasonTooShort
	case len(n) > 11:
		return "", Invalid, reasonTooLong
	case n[0] == '0' || n[0] == '1' && n[1] != '0' || allSame(n):
		return "", Invalid, reasonNotMobile
	}
	return "+86" + string(n), Landline, reasonLandline
}

// foreign checks a non-Chinese number, given after its + or 00, with
// libphonenumber's rules.
func foreign(d []byte) (string, Verdict, string) {
	if len(d) < 7 {
		return "", Invalid, reasonTooShort
	}
	if len(d) > 15 {
		return "", Invalid, reasonTooLong
	}
	num, err := phonenumbers.Parse("+"+string(d), "ZZ")
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", Invalid, reasonForeign
	}
	e164 := phonenumbers.Format(num, phonenumbers.E164)
	if phonenumbers.GetNumberType(num) == phonenumbers.FIXED_LINE {
		return e164, Landline, reasonLandline
	}
	return e164, Valid, ""
}

func allSame(n []byte) bool {
	for _, c := range n {
		if c != n[0] {
			return false
		}
	}
	return true
}

func hasPrefix(n []byte, p string) bool { return len(n) >= len(p) && string(n[:len(p)]) == p }

// cleanParts splits a field that is not one number. It returns nil unless
// at least two parts come out and one of them is usable.
func cleanParts(field string) []Contact {
	var out []Contact
	pieces := 0
	for _, part := range strings.FieldsFunc(field, isSeparator) {
		c := cleanOne(part)
		if !usable(c.Verdict) && strings.IndexFunc(strings.TrimSpace(part), unicode.IsSpace) >= 0 {
			words := strings.FieldsFunc(part, unicode.IsSpace)
			pieces += len(words)
			out = appendParts(out, words)
			continue
		}
		pieces++
		out = appendContact(out, c)
	}
	if pieces < 2 || !anyUsable(out) {
		out, pieces = gluedMobiles(field), 2
	}
	if pieces < 2 || !anyUsable(out) {
		return nil
	}
	for i := range out {
		if out[i].Verdict == Valid {
			out[i].Verdict, out[i].Reason = Fixed, reasonSplit
		}
	}
	return out
}

// isSeparator reports the runes between numbers of one field, full-width
// forms included. Spaces are not among them: a part is split on spaces only
// when it does not read as one number.
func isSeparator(r rune) bool {
	switch r {
	case '/', ',', ';', '、', '，', '；', '／', '|', '\n', '\r':
		return true
	}
	return false
}

func appendParts(out []Contact, parts []string) []Contact {
	for _, p := range parts {
		out = appendContact(out, cleanOne(p))
	}
	return out
}

// appendContact adds c unless the same number is already there. A part
// without digits ("(父亲)", "或") is a word between numbers, not a number.
func appendContact(out []Contact, c Contact) []Contact {
	if strings.IndexFunc(c.Raw, isDigit) < 0 {
		return out
	}
	for _, o := range out {
		if c.Phone != "" && o.Phone == c.Phone {
			return out
		}
	}
	return append(out, c)
}

func isDigit(r rune) bool { return r >= '0' && r <= '9' || r >= '０' && r <= '９' }

func anyUsable(cs []Contact) bool {
	for _, c := range cs {
		if usable(c.Verdict) {
			return true
		}
	}
	return false
}

// gluedMobiles reads "13812345678 1398765 4321" or digits run together as
// several 11-digit mobiles.
func gluedMobiles(field string) []Contact {
	var buf [maxDigits]byte
	d, plus, _ := digitsOf(field, &buf)
	if plus || len(d) < 22 || len(d)%11 != 0 {
		return nil
	}
	var out []Contact
	for i := 0; i < len(d); i += 11 {
		part := string(d[i : i+11])
		out = appendContact(out, cleanOne(part))
	}
	return out
}
