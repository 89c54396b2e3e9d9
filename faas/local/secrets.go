package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/openfaas/faas-provider/types"

	"github.com/dfaas-go/dfaas"
)

// maxSecret bounds a secret's value (Kubernetes bounds one at 1 MiB).
const maxSecret = 1 << 20

// EnvSecretMountPath names the directory of a process function's secrets.
const EnvSecretMountPath = "secret_mount_path"

// secretsKey is the context key of a Go handler's secrets directory.
type secretsKey struct{}

// ReadSecret reads a secret that the deployment of the function serving r
// names, as a Go handler of faas/local does. It fails for a secret the
// deployment does not name.
func ReadSecret(r *http.Request, name string) ([]byte, error) {
	dir, _ := r.Context().Value(secretsKey{}).(string)
	if dir == "" {
		return nil, errors.New("local: the function's deployment names no secrets")
	}
	if dfaas.ValidateFunctionName(name) != nil {
		return nil, fmt.Errorf("local: secret %q: not a DNS-1123 label", name)
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("local: secret %q: not named by the function's deployment", name)
	}
	return b, err
}

// withSecrets hands a Go handler its secrets directory, if it has one.
func withSecrets(h http.Handler, dir string) http.Handler {
	if dir == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), secretsKey{}, dir)))
	})
}

// secretFile is where a secret of namespace ns is kept.
func (p *Provider) secretFile(ns, name string) string {
	return filepath.Join(p.cfg.SecretsDir, "store", ns, name)
}

// mountDir is the directory of a function's secrets.
func (p *Provider) mountDir(k key) string {
	return filepath.Join(p.cfg.SecretsDir, "mounts", k.ns, k.name)
}

// mount writes the secrets a function's deployment names into its
// directory (afresh), and returns the directory; "" if it names none. The
// caller holds p.mu.
func (p *Provider) mount(k key, names []string) (string, error) {
	dir := p.mountDir(k)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if len(names) == 0 {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for _, name := range names {
		b, err := os.ReadFile(p.secretFile(k.ns, name))
		if err != nil {
			return "", fmt.Errorf("secret %q not found in namespace %q", name, k.ns)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// remount refreshes the directories of the functions of namespace ns that
// name a secret that changed or went. The caller holds p.mu.
func (p *Provider) remount(ns, secret string) {
	for k, f := range p.fns {
		if k.ns != ns || !slices.Contains(f.spec.Secrets, secret) {
			continue
		}
		dir := p.mountDir(k)
		b, err := os.ReadFile(p.secretFile(ns, secret))
		switch {
		case err == nil:
			err = os.WriteFile(filepath.Join(dir, secret), b, 0o600)
		case errors.Is(err, fs.ErrNotExist):
			err = os.Remove(filepath.Join(dir, secret))
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.log.Warn("a function's secret not refreshed", "function", k.name, "namespace", k.ns, "secret", secret, "err", err)
		}
	}
}

func (p *Provider) listSecrets(w http.ResponseWriter, r *http.Request) {
	ns, ok := p.namespace(w, r.URL.Query().Get("namespace"))
	if !ok {
		return
	}
	p.mu.RLock()
	entries, err := os.ReadDir(filepath.Join(p.cfg.SecretsDir, "store", ns))
	p.mu.RUnlock()
	out := []types.Secret{}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		http.Error(w, "listing secrets: "+err.Error(), http.StatusInternalServerError)
		return
	}
	for _, e := range entries {
		out = append(out, types.Secret{Name: e.Name(), Namespace: ns})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, out)
}

// decodeSecret reads and checks a secret request.
func (p *Provider) decodeSecret(w http.ResponseWriter, r *http.Request, needValue bool) (types.Secret, string, bool) {
	var s types.Secret
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 2*maxSecret)).Decode(&s); err != nil {
		http.Error(w, "invalid secret: "+err.Error(), http.StatusBadRequest)
		return s, "", false
	}
	if err := dfaas.ValidateFunctionName(s.Name); err != nil {
		http.Error(w, fmt.Sprintf("secret %q: not a DNS-1123 label", s.Name), http.StatusBadRequest)
		return s, "", false
	}
	ns, ok := p.namespace(w, s.Namespace)
	if !ok {
		return s, "", false
	}
	if needValue && (len(s.Value)+len(s.RawValue) == 0 || len(s.Value)+len(s.RawValue) > maxSecret) {
		http.Error(w, fmt.Sprintf("secret %q: want a value of 1 byte to 1 MiB", s.Name), http.StatusBadRequest)
		return s, "", false
	}
	return s, ns, true
}

func (p *Provider) createSecret(w http.ResponseWriter, r *http.Request) { p.putSecret(w, r, false) }

func (p *Provider) updateSecret(w http.ResponseWriter, r *http.Request) { p.putSecret(w, r, true) }

func (p *Provider) putSecret(w http.ResponseWriter, r *http.Request, update bool) {
	s, ns, ok := p.decodeSecret(w, r, true)
	if !ok {
		return
	}
	value := s.RawValue
	if len(value) == 0 {
		value = []byte(s.Value)
	}
	file := p.secretFile(ns, s.Name)
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := os.Stat(file)
	switch exists := err == nil; {
	case update && !exists:
		http.Error(w, fmt.Sprintf("secret %q not found", s.Name), http.StatusNotFound)
		return
	case !update && exists:
		http.Error(w, fmt.Sprintf("secret %q exists", s.Name), http.StatusConflict)
		return
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		http.Error(w, "storing the secret: "+err.Error(), http.StatusInternalServerError)
		return
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, value, 0o600); err != nil {
		http.Error(w, "storing the secret: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if err := os.Rename(tmp, file); err != nil {
		http.Error(w, "storing the secret: "+err.Error(), http.StatusInternalServerError)
		return
	}
	p.remount(ns, s.Name)
	p.log.Info("secret stored", "name", s.Name, "namespace", ns, "update", update)
	if update {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (p *Provider) deleteSecret(w http.ResponseWriter, r *http.Request) {
	s, ns, ok := p.decodeSecret(w, r, false)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := os.Remove(p.secretFile(ns, s.Name)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			http.Error(w, fmt.Sprintf("secret %q not found", s.Name), http.StatusNotFound)
			return
		}
		http.Error(w, "deleting the secret: "+err.Error(), http.StatusInternalServerError)
		return
	}
	p.remount(ns, s.Name)
	p.log.Info("secret deleted", "name", s.Name, "namespace", ns)
	w.WriteHeader(http.StatusAccepted)
}
