package image

import (
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/BurntSushi/toml"
)

// Keyring holds the public keys a device or a build host trusts, and the key ids it has
// revoked. A revoked id stays refused even when its key is also listed as trusted.
//
// On disk a keyring is a TOML file. `revoked` comes before the first [[key]] table (TOML would
// put it inside that table otherwise):
//
//	revoked = ["0f3c9a1e5b7d2c4a6e8f0a1b2c3d4e5f"]   # key ids, as `aduimport inspect` prints them
//
//	# keys that may sign images for this product
//	[[key]]
//	name = "release-2026"           # free text, shown in messages
//	file = "release-2026.pub.pem"   # relative to the keyring file's folder
//
//	[[key]]
//	name = "factory"
//	pem = """
//	-----BEGIN PUBLIC KEY-----
//	...
//	-----END PUBLIC KEY-----
//	"""
type Keyring struct {
	keys    map[KeyID]keyringEntry
	revoked map[KeyID]bool
}

type keyringEntry struct {
	name string
	pub  crypto.PublicKey
}

// NewKeyring returns a keyring trusting the given public keys.
func NewKeyring(pubs ...crypto.PublicKey) (*Keyring, error) {
	kr := &Keyring{keys: map[KeyID]keyringEntry{}, revoked: map[KeyID]bool{}}
	for _, p := range pubs {
		if _, err := kr.Add("", p); err != nil {
			return nil, err
		}
	}
	return kr, nil
}

// Add trusts pub under an informational name and returns its key id.
func (kr *Keyring) Add(name string, pub crypto.PublicKey) (KeyID, error) {
	id, err := KeyIDOf(pub)
	if err != nil {
		return id, err
	}
	kr.keys[id] = keyringEntry{name: name, pub: pub}
	return id, nil
}

// Revoke refuses the key id from now on.
func (kr *Keyring) Revoke(id KeyID) { kr.revoked[id] = true }

// Lookup returns the trusted public key with this id, or an error wrapping ErrRevokedKey or
// ErrUnknownKey.
func (kr *Keyring) Lookup(id KeyID) (crypto.PublicKey, error) {
	if kr.revoked[id] {
		return nil, fmt.Errorf("%w: key id %s is revoked by the keyring", ErrRevokedKey, id)
	}
	e, ok := kr.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: key id %s is not in the keyring", ErrUnknownKey, id)
	}
	return e.pub, nil
}

// KeyIDs lists the trusted, non-revoked key ids in a stable order.
func (kr *Keyring) KeyIDs() []KeyID {
	ids := make([]KeyID, 0, len(kr.keys))
	for id := range kr.keys {
		if !kr.revoked[id] {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	return ids
}

// Name returns the informational name a key was added under ("" when none).
func (kr *Keyring) Name(id KeyID) string { return kr.keys[id].name }

type keyringFile struct {
	Key []struct {
		Name string `toml:"name"`
		File string `toml:"file"`
		PEM  string `toml:"pem"`
	} `toml:"key"`
	Revoked []string `toml:"revoked"`
}

// ParseKeyring parses a keyring file's contents. Relative `file =` paths are resolved against
// baseDir. Each error names the entry it is about.
func ParseKeyring(data []byte, baseDir string) (*Keyring, error) {
	var f keyringFile
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, fmt.Errorf("%w: keyring: %w", ErrBadKey, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		if k := und[0]; len(k) == 2 && k[0] == "key" && k[1] == "revoked" {
			return nil, fmt.Errorf("%w: keyring: revoked is inside a [[key]] table: put it before the first [[key]]", ErrBadKey)
		}
		return nil, fmt.Errorf("%w: keyring: unknown setting %q", ErrBadKey, und[0].String())
	}
	kr, _ := NewKeyring()
	for i, k := range f.Key {
		where := fmt.Sprintf("keyring: key[%d]", i)
		if k.Name != "" {
			where += fmt.Sprintf(" (%q)", k.Name)
		}
		var pemData []byte
		switch {
		case k.File != "" && k.PEM != "":
			return nil, fmt.Errorf("%w: %s: give either file or pem, not both", ErrBadKey, where)
		case k.File != "":
			p := k.File
			if !filepath.IsAbs(p) {
				p = filepath.Join(baseDir, p)
			}
			if pemData, err = os.ReadFile(p); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		case k.PEM != "":
			pemData = []byte(k.PEM)
		default:
			return nil, fmt.Errorf("%w: %s: needs file or pem", ErrBadKey, where)
		}
		pub, err := ParsePublicKeyPEM(pemData)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if _, err := kr.Add(k.Name, pub); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	for i, r := range f.Revoked {
		id, err := ParseKeyID(r)
		if err != nil {
			return nil, fmt.Errorf("keyring: revoked[%d]: %w", i, err)
		}
		kr.Revoke(id)
	}
	return kr, nil
}

// LoadKeyring reads a keyring file.
func LoadKeyring(path string) (*Keyring, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kr, err := ParseKeyring(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return kr, nil
}
