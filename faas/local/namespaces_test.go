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

// TestNamespaceAPI: namespaces are created, read, updated and deleted
// through OpenFaaS's own client; a created namespace is listed while empty;
// deleting one deletes its functions and secrets; the default namespace
// cannot be deleted; names are DNS-1123 labels.
func TestNamespaceAPI(t *testing.T) {
	dir := t.TempDir()
	p, err := New(Config{SecretsDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, p.Close())
		http.DefaultClient.CloseIdleConnections()
	})
	require.NoError(t, p.RegisterImage("dfaas/echo", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})))
	ctx := context.Background()
	u, _ := url.Parse(p.URL())
	c := sdk.NewClient(u, nil, http.DefaultClient)
	base := strings.TrimSuffix(p.URL(), "/")

	names, err := c.GetNamespaces(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"openfaas-fn"}, names)

	code, err := c.CreateNamespace(ctx, types.FunctionNamespace{Name: "team-a", Labels: map[string]string{"team": "a"}})
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, code)
	names, err = c.GetNamespaces(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"openfaas-fn", "team-a"}, names, "listed while empty")
	ns, err := c.GetNamespace(ctx, "team-a")
	require.NoError(t, err)
	assert.Equal(t, types.FunctionNamespace{Name: "team-a", Labels: map[string]string{"team": "a", "openfaas": "1"},
		Annotations: map[string]string{"openfaas": "1"}}, ns)
	code, _ = c.CreateNamespace(ctx, types.FunctionNamespace{Name: "team-a"})
	assert.Equal(t, http.StatusConflict, code, "created once")
	code, _ = c.CreateNamespace(ctx, types.FunctionNamespace{Name: "openfaas-fn"})
	assert.Equal(t, http.StatusConflict, code, "the default exists")
	code, _ = c.CreateNamespace(ctx, types.FunctionNamespace{Name: "Team_A"})
	assert.Equal(t, http.StatusBadRequest, code)

	code, err = c.UpdateNamespace(ctx, types.FunctionNamespace{Name: "team-a", Labels: map[string]string{"team": "b"}})
	require.NoError(t, err)
	assert.Equal(t, http.StatusAccepted, code)
	ns, err = c.GetNamespace(ctx, "team-a")
	require.NoError(t, err)
	assert.Equal(t, "b", ns.Labels["team"])
	code, _ = c.UpdateNamespace(ctx, types.FunctionNamespace{Name: "nowhere"})
	assert.Equal(t, http.StatusNotFound, code)
	_, err = c.GetNamespace(ctx, "nowhere")
	assert.ErrorContains(t, err, "not found")

	// A namespace made by a deployment, as before the API, reads as one.
	_, err = c.Deploy(ctx, types.FunctionDeployment{Service: "echo", Image: "dfaas/echo", Namespace: "team-c"})
	require.NoError(t, err)
	ns, err = c.GetNamespace(ctx, "team-c")
	require.NoError(t, err)
	assert.Equal(t, "1", ns.Labels["openfaas"])

	// Deleted with what is in it.
	_, err = c.Deploy(ctx, types.FunctionDeployment{Service: "echo", Image: "dfaas/echo", Namespace: "team-a"})
	require.NoError(t, err)
	_, err = c.CreateSecret(ctx, types.Secret{Name: "key", Namespace: "team-a", Value: "v"})
	require.NoError(t, err)
	code, _ = call(t, "POST", base+"/function/echo.team-a", "x")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, c.DeleteNamespace(ctx, "team-a"))
	code, _ = call(t, "POST", base+"/function/echo.team-a", "x")
	assert.Equal(t, http.StatusNotFound, code, "its function went with it")
	secrets, err := c.GetSecrets(ctx, "team-a")
	require.NoError(t, err)
	assert.Empty(t, secrets, "and its secrets")
	_, err = os.Stat(filepath.Join(dir, "store", "team-a"))
	assert.ErrorIs(t, err, os.ErrNotExist, "from the disk too")
	names, err = c.GetNamespaces(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"openfaas-fn", "team-c"}, names)
	assert.ErrorContains(t, c.DeleteNamespace(ctx, "team-a"), "not found")
	assert.ErrorContains(t, c.DeleteNamespace(ctx, "openfaas-fn"), "400", "the default stays")
	code, _ = call(t, "POST", base+"/function/echo.team-c", "x")
	assert.Equal(t, http.StatusOK, code, "other namespaces untouched")
}
