package local

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"

	"github.com/openfaas/faas-provider/types"

	"github.com/dfaas-go/dfaas"
)

// Namespaces, as the provider API's namespace routes manage them
// (faas-provider's MutateNamespace, go-sdk's CreateNamespace and the
// like): the default namespace (Config.Namespace) always exists; others
// are created by POST /system/namespace/, or by deploying a function or
// storing a secret in them, as before the API existed. Each keeps the
// labels and annotations it was created or updated with. Deleting one
// deletes its functions and secrets, as deleting a Kubernetes namespace
// does; the default namespace cannot be deleted. The community edition's
// gateway routes only the list (GET /system/namespaces), so the others are
// called at the provider itself.

// openfaasMark is the label and annotation OpenFaaS puts on its namespaces.
var openfaasMark = map[string]string{"openfaas": "1"}

// namespaceNames lists the namespaces that exist. The caller holds p.mu.
func (p *Provider) namespaceNames() []string {
	set := map[string]bool{p.cfg.Namespace: true}
	for ns := range p.nss {
		set[ns] = true
	}
	for k := range p.fns {
		set[k.ns] = true
	}
	if dirs, err := os.ReadDir(filepath.Join(p.cfg.SecretsDir, "store")); err == nil {
		for _, d := range dirs {
			if d.IsDir() {
				set[d.Name()] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func (p *Provider) namespaces(w http.ResponseWriter, _ *http.Request) {
	p.mu.RLock()
	out := p.namespaceNames()
	p.mu.RUnlock()
	writeJSON(w, http.StatusOK, out)
}

// namespaceOf is namespace ns as the API shows it, and whether it exists.
// The caller holds p.mu.
func (p *Provider) namespaceOf(ns string) (types.FunctionNamespace, bool) {
	if n, ok := p.nss[ns]; ok {
		return n, true
	}
	if !slices.Contains(p.namespaceNames(), ns) {
		return types.FunctionNamespace{}, false
	}
	return types.FunctionNamespace{Name: ns, Labels: maps.Clone(openfaasMark), Annotations: maps.Clone(openfaasMark)}, true
}

func (p *Provider) getNamespace(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("name")
	p.mu.RLock()
	n, ok := p.namespaceOf(ns)
	p.mu.RUnlock()
	if !ok {
		http.Error(w, fmt.Sprintf("namespace %q not found", ns), http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

// decodeNamespace reads a namespace request: its name is the path's or
// the body's (both, if given, the same).
func (p *Provider) decodeNamespace(w http.ResponseWriter, r *http.Request) (types.FunctionNamespace, bool) {
	var n types.FunctionNamespace
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&n); err != nil {
		http.Error(w, "invalid namespace request: "+err.Error(), http.StatusBadRequest)
		return n, false
	}
	if path := r.PathValue("name"); path != "" {
		if n.Name != "" && n.Name != path {
			http.Error(w, fmt.Sprintf("namespace %q in the body, %q in the path", n.Name, path), http.StatusBadRequest)
			return n, false
		}
		n.Name = path
	}
	if err := dfaas.ValidateFunctionName(n.Name); err != nil {
		http.Error(w, fmt.Sprintf("namespace %q: not a DNS-1123 label", n.Name), http.StatusBadRequest)
		return n, false
	}
	return n, true
}

func (p *Provider) createNamespace(w http.ResponseWriter, r *http.Request) {
	n, ok := p.decodeNamespace(w, r)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, exists := p.namespaceOf(n.Name); exists {
		http.Error(w, fmt.Sprintf("namespace %q exists", n.Name), http.StatusConflict)
		return
	}
	p.nss[n.Name] = n
	p.log.Info("namespace created", "namespace", n.Name)
	w.WriteHeader(http.StatusCreated)
}

func (p *Provider) updateNamespace(w http.ResponseWriter, r *http.Request) {
	n, ok := p.decodeNamespace(w, r)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, exists := p.namespaceOf(n.Name); !exists {
		http.Error(w, fmt.Sprintf("namespace %q not found", n.Name), http.StatusNotFound)
		return
	}
	p.nss[n.Name] = n
	p.log.Info("namespace updated", "namespace", n.Name)
	w.WriteHeader(http.StatusAccepted)
}

func (p *Provider) deleteNamespace(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("name")
	if ns == p.cfg.Namespace {
		http.Error(w, fmt.Sprintf("namespace %q is the provider's default: it cannot be deleted", ns), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, exists := p.namespaceOf(ns); !exists {
		http.Error(w, fmt.Sprintf("namespace %q not found", ns), http.StatusNotFound)
		return
	}
	var removed int
	for k := range p.fns {
		if k.ns == ns {
			delete(p.fns, k)
			removed++
		}
	}
	delete(p.nss, ns)
	for _, dir := range []string{filepath.Join(p.cfg.SecretsDir, "store", ns), filepath.Join(p.cfg.SecretsDir, "mounts", ns)} {
		if err := os.RemoveAll(dir); err != nil {
			http.Error(w, "deleting the namespace's secrets: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	p.log.Info("namespace deleted", "namespace", ns, "functions", removed)
	w.WriteHeader(http.StatusAccepted)
}
