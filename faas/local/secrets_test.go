package local

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openfaas/faas-provider/types"
	sdk "github.com/openfaas/go-sdk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSecrets: the provider's secrets API through OpenFaaS's own client
// (create, list, update, delete, by namespace); a deployment naming a
// secret the namespace lacks is refused; a process function reads its
// secrets from the directory secret_mount_path names, a Go handler with
// ReadSecret, each only the secrets its deployment names; files are 0600;
// an update reaches the functions that name the secret.
func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	p, err := New(Config{SecretsDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, p.Close())
		http.DefaultClient.CloseIdleConnections()
	})
	require.NoError(t, p.RegisterImage("dfaas/secret", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := ReadSecret(r, r.URL.Query().Get("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		_, _ = w.Write(b)
	})))
	ctx := context.Background()
	u, _ := url.Parse(p.URL())
	c := sdk.NewClient(u, nil, http.DefaultClient)
	base := strings.TrimSuffix(p.URL(), "/")

	_, err = c.CreateSecret(ctx, types.Secret{Name: "api-key", Value: "s3cret"})
	require.NoError(t, err)
	_, err = c.CreateSecret(ctx, types.Secret{Name: "other", RawValue: []byte{0, 1, 2}})
	require.NoError(t, err)
	code, _ := c.CreateSecret(ctx, types.Secret{Name: "api-key", Value: "again"})
	assert.Equal(t, http.StatusConflict, code, "a secret is created once")
	_, err = c.CreateSecret(ctx, types.Secret{Name: "elsewhere", Namespace: "team-b", Value: "b"})
	require.NoError(t, err)
	list, err := c.GetSecrets(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, []types.Secret{{Name: "api-key", Namespace: "openfaas-fn"}, {Name: "other", Namespace: "openfaas-fn"}}, list, "names, no values")
	list, err = c.GetSecrets(ctx, "team-b")
	require.NoError(t, err)
	assert.Equal(t, []types.Secret{{Name: "elsewhere", Namespace: "team-b"}}, list)
	for _, bad := range []types.Secret{{Name: "Bad_Name", Value: "x"}, {Name: "empty"}} {
		code, _ := c.CreateSecret(ctx, bad)
		assert.Equal(t, http.StatusBadRequest, code, bad.Name)
	}

	code, body := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "nope", Image: "dfaas/secret", Secrets: []string{"missing"}})
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, "missing")
	script := filepath.Join(t.TempDir(), "cat-secret")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\ncat \"$secret_mount_path/api-key\"\n"), 0o700))
	code, _ = call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "cat", Image: "any",
		EnvProcess: script, Secrets: []string{"api-key"}})
	require.Equal(t, http.StatusAccepted, code)
	code, _ = call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "go", Image: "dfaas/secret", Secrets: []string{"api-key"}})
	require.Equal(t, http.StatusAccepted, code)

	code, body = call(t, "POST", base+"/function/cat", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "s3cret", body)
	code, _ = call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "cat2", Image: "any",
		EnvProcess: "cat " + OpenFaaSSecrets + "api-key", Secrets: []string{"api-key"}})
	require.Equal(t, http.StatusAccepted, code)
	code, body = call(t, "POST", base+"/function/cat2", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "s3cret", body, "OpenFaaS's path in a command line is the function's own directory")
	code, body = call(t, "GET", base+"/function/go?name=api-key", nil)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "s3cret", body)
	code, _ = call(t, "GET", base+"/function/go?name=other", nil)
	assert.Equal(t, http.StatusForbidden, code, "only the secrets its deployment names")
	st, err := c.GetFunction(ctx, "go", "")
	require.NoError(t, err)
	assert.Equal(t, []string{"api-key"}, st.Secrets, "status names its secrets")

	_, err = c.UpdateSecret(ctx, types.Secret{Name: "api-key", Value: "rotated"})
	require.NoError(t, err)
	_, body = call(t, "POST", base+"/function/cat", "")
	assert.Equal(t, "rotated", body, "an update reaches the function")
	code, _ = c.UpdateSecret(ctx, types.Secret{Name: "absent", Value: "x"})
	assert.Equal(t, http.StatusNotFound, code)

	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		require.NoError(t, err)
		info, err := d.Info()
		require.NoError(t, err)
		if path == dir {
			return nil // the operator's
		}
		if d.IsDir() {
			assert.Zero(t, info.Mode().Perm()&0o077, "%s: %v", path, info.Mode())
		} else {
			assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), path)
		}
		return nil
	})
	require.NoError(t, err)

	require.NoError(t, c.DeleteSecret(ctx, "api-key", ""))
	code, _ = call(t, "GET", base+"/function/go?name=api-key", nil)
	assert.Equal(t, http.StatusForbidden, code, "deleted: gone from the function too")
	assert.Error(t, c.DeleteSecret(ctx, "api-key", ""), "404 once gone")
}
