package notify

import "unicode/utf16"

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
	units := 0
	for _, r := range body {
		units += utf16.RuneLen(r)
	}
	return parts(units, 70, 67), UCS2
}

// gsmCost is the septets each GSM character takes: 1 basic, 2 extension.
var gsmCost = func() map[rune]int {
	m := map[rune]int{}
	for _, r := range gsmBasic {
		m[r] = 1
	}
	for _, r := range gsmExt {
		m[r] = 2
	}
	return m
}()

// gsmASCII is gsmCost for the ASCII range, the common case.
var gsmASCII = func() (a [128]int8) {
	for r, c := range gsmCost {
		if r < 128 {
			a[r] = int8(c)
		}
	}
	return a
}()

func gsmSeptets(s string) (int, bool) {
	n := 0
	for _, r := range s {
		c := 0
		if r < 128 {
			c = int(gsmASCII[r])
		} else {
			c = gsmCost[r]
		}
		if c == 0 {
			return 0, false
		}
		n += c
	}
	return n, true
}

func parts(units, single, multi int) int {
	if units <= single {
		return 1
	}
	return (units + multi - 1) / multi
}
