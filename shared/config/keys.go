package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Key is one secret key with its id. The first key of a list signs or
// encrypts; all of them verify or decrypt, which is how keys rotate.
type Key struct {
	ID       string
	Material []byte
}

var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,16}$`)

// ParseKeys reads "KEYID:BASE64[,KEYID:BASE64...]". Errors name the position,
// never the key material.
func ParseKeys(v string) ([]Key, error) {
	if strings.TrimSpace(v) == "" {
		return nil, errors.New("no keys given (want KEYID:BASE64[,KEYID:BASE64...])")
	}
	var keys []Key
	seen := map[string]bool{}
	for i, part := range strings.Split(v, ",") {
		id, b64, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("key %d is not KEYID:BASE64", i+1)
		}
		if !keyIDRE.MatchString(id) {
			return nil, fmt.Errorf("key %d: id must be 1-16 of [A-Za-z0-9_-]", i+1)
		}
		if seen[id] {
			return nil, fmt.Errorf("key %d: id %q used twice", i+1, id)
		}
		seen[id] = true
		mat, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			mat, err = base64.RawURLEncoding.DecodeString(b64)
		}
		if err != nil {
			return nil, fmt.Errorf("key %d (%s): not valid base64", i+1, id)
		}
		if len(mat) < 32 {
			return nil, fmt.Errorf("key %d (%s): %d bytes, need at least 32", i+1, id, len(mat))
		}
		keys = append(keys, Key{ID: id, Material: mat})
	}
	return keys, nil
}
