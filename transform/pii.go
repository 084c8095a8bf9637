package transform

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"

	"github.com/convsync/convsync/schemas"
)

// PII modes, as --pii names them.
const (
	PIIKeep   = "keep"
	PIIHash   = "hash"
	PIIRedact = "redact"
)

// PIIKeyEnv is the environment variable that holds the HMAC key for --pii hash.
const PIIKeyEnv = "CONVSYNC_PII_KEY"

// ErrNoPIIKey is returned by Policy.Validate when hash mode has no key.
var ErrNoPIIKey = errors.New("the hash mode needs a key")

// Policy says what happens to the values of PII-tagged columns.
//
//   - keep: values as the API gives them.
//   - hash: standard columns hold lowercase hex HMAC-SHA256 of the value,
//     keyed with Key, so equal values still join; sensitive columns are NULL.
//   - redact: every tagged column is NULL.
type Policy struct {
	Mode string
	Key  []byte
}

// Validate checks the mode and, for hash, that a key is present.
func (p Policy) Validate() error {
	switch p.Mode {
	case PIIKeep, PIIRedact:
		return nil
	case PIIHash:
		if len(p.Key) == 0 {
			return ErrNoPIIKey
		}
		return nil
	default:
		return fmt.Errorf("unknown PII mode %q (want keep, hash or redact)", p.Mode)
	}
}

// Hash returns the lowercase hex HMAC-SHA256 of v under the policy's key.
func (p Policy) Hash(v string) string {
	m := hmac.New(sha256.New, p.Key)
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}

// Display returns how a PII value may be shown in logs and summaries:
// itself under keep, its hash under hash, "[redacted]" under redact.
func (p Policy) Display(v string) string {
	switch p.Mode {
	case PIIHash:
		return "hmac:" + p.Hash(v)
	case PIIRedact:
		return "[redacted]"
	default:
		return v
	}
}

// apply maps a (non-null) value of a column tagged pii to what is written
// under hash or redact; ok is false when the column is to be NULL.
func (p *piiApplier) apply(pii string, v []byte) (string, bool) {
	if p.mode == PIIHash && pii == schemas.PIIStandard {
		p.mac.Reset()
		p.mac.Write(v)
		p.buf = p.mac.Sum(p.buf[:0])
		return hex.EncodeToString(p.buf), true
	}
	return "", false
}

// piiApplier holds one reusable HMAC state; it is not safe for concurrent
// use, so each Builder has its own.
type piiApplier struct {
	mode string
	mac  hash.Hash
	buf  []byte
}

func newApplier(p Policy) *piiApplier {
	return &piiApplier{mode: p.Mode, mac: hmac.New(sha256.New, p.Key)}
}
