package seal

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MasterKeySize is the size in bytes of the master key.
const MasterKeySize = 32

// LoadMasterKey returns the master key from env (the value of an environment
// variable such as AURUM_MASTER_KEY) if it is not empty, else from the file
// at path. The key is 32 bytes encoded as hex or base64 (standard or URL
// alphabet, with or without padding); surrounding whitespace is ignored.
func LoadMasterKey(path, env string) ([]byte, error) {
	if strings.TrimSpace(env) != "" {
		k, err := parseMasterKey(env)
		if err != nil {
			return nil, fmt.Errorf("seal: master key from environment: %w", err)
		}
		return k, nil
	}
	if path == "" {
		return nil, errors.New("seal: no master key: set the environment variable or give a key file")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seal: master key file: %w", err)
	}
	k, err := parseMasterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("seal: master key file %s: %w", path, err)
	}
	return k, nil
}

func parseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty")
	}
	if len(s) == 2*MasterKeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		k, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(k) != MasterKeySize {
			return nil, fmt.Errorf("decodes to %d bytes, want %d", len(k), MasterKeySize)
		}
		return k, nil
	}
	return nil, fmt.Errorf("not %d bytes in hex or base64 (%d characters)", MasterKeySize, len(s))
}

// EnsureMasterKeyFile reads the master key at path, or creates it with a new
// random key (mode 0600, base64) when the file does not exist. created
// reports whether the key was created. Creation is atomic: the key is
// written to a temporary file in the same directory and fsynced, moved into
// place without replacing a file another process created meanwhile (in
// which case that key is returned), and the directory is fsynced.
func EnsureMasterKeyFile(path string) (key []byte, created bool, err error) {
	key, err = LoadMasterKey(path, "")
	if err == nil {
		return key, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("seal: create master key: %w", err)
	}
	key = make([]byte, MasterKeySize)
	rand.Read(key)

	tmp, err := os.CreateTemp(dir, ".master-key-*") // mode 0600
	if err != nil {
		return nil, false, fmt.Errorf("seal: create master key: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // no-op once moved into place
	if err := writeSync(tmp, base64.StdEncoding.EncodeToString(key)+"\n"); err != nil {
		return nil, false, fmt.Errorf("seal: create master key: %w", err)
	}
	// Link fails if path exists, so a concurrent creator's key is never
	// replaced; fall back to rename where hard links are not supported.
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			key, err := LoadMasterKey(path, "")
			return key, false, err
		}
		if err := os.Rename(tmpName, path); err != nil {
			return nil, false, fmt.Errorf("seal: create master key: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return nil, false, fmt.Errorf("seal: create master key: %w", err)
	}
	return key, true, nil
}

func writeSync(f *os.File, s string) error {
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
