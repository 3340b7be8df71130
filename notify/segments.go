package notify

import (
	"strings"
	"unicode/utf16"
)

// Encodings an SMS body is sent in.
const (
	GSM7 = "GSM-7"
	UCS2 = "UCS-2"
)

// gsmBasic is the GSM 03.38 default alphabet; gsmExt characters take an
// escape plus one septet.
const (
	gsmBasic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
		"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	gsmExt = "^{}\\[~]|€\f"
)

// Segments counts the SMS segments body needs: GSM-7 when every character is
// in the GSM alphabet (160 septets alone, 153 a part), otherwise UCS-2 (70
// UTF-16 units alone, 67 a part).
func Segments(body string) (n int, encoding string) {
	if septets, ok := gsmSeptets(body); ok {
		return parts(septets, 160, 153), GSM7
	}
	return parts(len(utf16.Encode([]rune(body))), 70, 67), UCS2
}

func gsmSeptets(s string) (int, bool) {
	n := 0
	for _, r := range s {
		switch {
		case strings.ContainsRune(gsmBasic, r):
			n++
		case strings.ContainsRune(gsmExt, r):
			n += 2
		default:
			return 0, false
		}
	}
	return n, true
}

func parts(units, single, multi int) int {
	if units <= single {
		return 1
	}
	return (units + multi - 1) / multi
}
