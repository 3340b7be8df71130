package httpapi

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// Password hashes are PBKDF2-SHA256, written
// pbkdf2-sha256$<iterations>$<salt>$<key> with unpadded standard base64.
const (
	hashScheme     = "pbkdf2-sha256"
	hashIterations = 600_000 // OWASP's figure for PBKDF2-SHA256
	minIterations  = 100_000
	hashKeyLen     = 32
)

// HashPassword returns the stored form of password for auth.users.
func HashPassword(password string) (string, error) {
	if len(password) < 8 {
		return "", errors.New("cannot hash password: shorter than 8 characters")
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, password, salt, hashIterations, hashKeyLen)
	if err != nil {
		return "", fmt.Errorf("cannot hash password: %w", err)
	}
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("%s$%d$%s$%s", hashScheme, hashIterations, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

type parsedHash struct {
	iter      int
	salt, key []byte
}

func parseHash(h string) (parsedHash, error) {
	parts := strings.Split(h, "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return parsedHash{}, errors.New("not pbkdf2-sha256$ITERATIONS$SALT$KEY (make one with `gridbell auth hash-password`)")
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < minIterations {
		return parsedHash{}, fmt.Errorf("iterations %q: want at least %d", parts[1], minIterations)
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[2])
	key, err2 := b64.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 {
		return parsedHash{}, errors.New("salt or key is not base64 of the right length")
	}
	return parsedHash{iter: iter, salt: salt, key: key}, nil
}

func checkHash(h string) error {
	_, err := parseHash(h)
	return err
}

// checkPassword reports whether password matches the stored hash h.
func checkPassword(h, password string) bool {
	p, err := parseHash(h)
	if err != nil {
		return false
	}
	key, err := pbkdf2.Key(sha256.New, password, p.salt, p.iter, len(p.key))
	return err == nil && subtle.ConstantTimeCompare(key, p.key) == 1
}

// dummyHash is checked against when a login names no user, so an unknown
// name takes as long to refuse as a wrong password.
var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("no-such-user-password")
	return h
})
