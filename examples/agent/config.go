package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// flagOnly are settings only the command line may make: turning security
// off must be visible in the process list and the unit, not in a file or
// an environment variable meant for something else.
var flagOnly = map[string]bool{"insecure": true}

// envPrefix starts the environment variable of every flag: DFAAS_ and the
// flag's name in upper case with dashes as underscores (DFAAS_FN_NAMESPACE).
const envPrefix = "DFAAS_"

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// layer applies, to the flags the command line did not set, the file named
// by -config and then the environment, so that flags win over the
// environment, which wins over the file. Every key of the file is a flag's
// name; lists are YAML sequences and the functions a mapping. A value a
// flag would refuse, or a key no flag has, is an error naming it. The
// returned origins say where each value set from the file or the
// environment came from, for the checks made after.
func layer(fs *flag.FlagSet, getenv func(string) string) (origins, error) {
	from := origins{}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if path := fs.Lookup("config").Value.String(); path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		var file map[string]yaml.Node
		if err := yaml.Unmarshal(raw, &file); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		keys := make([]string, 0, len(file))
		for k := range file {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, key := range keys {
			node := file[key]
			if fs.Lookup(key) == nil || key == "config" {
				return nil, fmt.Errorf("config %s: line %d: unknown key %q", path, node.Line, key)
			}
			if flagOnly[key] {
				return nil, fmt.Errorf("config %s: line %d: %s is a command-line flag only", path, node.Line, key)
			}
			v, err := flagValue(key, &node)
			if err != nil {
				return nil, fmt.Errorf("config %s: line %d: %s: %w", path, node.Line, key, err)
			}
			if given[key] {
				continue
			}
			if err := fs.Set(key, v); err != nil {
				return nil, fmt.Errorf("config %s: line %d: %s: %w%s", path, node.Line, key, err, hint(fs.Lookup(key)))
			}
			from[key] = fmt.Sprintf("config %s line %d", path, node.Line)
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(envName(f.Name))
		if err != nil || given[f.Name] || v == "" || f.Name == "config" {
			return
		}
		if flagOnly[f.Name] {
			err = fmt.Errorf("environment %s: %s is a command-line flag only", envName(f.Name), f.Name)
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("environment %s: %w%s", envName(f.Name), e, hint(f))
			return
		}
		from[f.Name] = "environment " + envName(f.Name)
	})
	return from, err
}

// origins maps a flag's name to where its value came from, if not the
// command line or the default.
type origins map[string]string

// of is " (<where name's value came from>)", or nothing.
func (o origins) of(name string) string {
	if w, ok := o[name]; ok {
		return " (" + w + ")"
	}
	return ""
}

// hint says what a flag wants, where its parse error does not: a duration
// flag says only "parse error".
func hint(f *flag.Flag) string {
	if g, ok := f.Value.(flag.Getter); ok {
		if _, ok := g.Get().(time.Duration); ok {
			return ": want a duration with its unit, such as 500ms, 1s or 2m"
		}
	}
	return ""
}

// listKeys take a YAML sequence, mapKeys a mapping; every other key a
// plain value.
var (
	listKeys = map[string]bool{"listen": true, "bootstrap": true}
	mapKeys  = map[string]bool{"functions": true}
)

// flagValue turns key's YAML value into its flag's string: a scalar as
// written, a sequence comma-separated, a mapping as name=value pairs.
func flagValue(key string, n *yaml.Node) (string, error) {
	switch {
	case n.Kind == yaml.ScalarNode:
		return n.Value, nil
	case n.Kind == yaml.SequenceNode && !listKeys[key], n.Kind == yaml.MappingNode && !mapKeys[key]:
		return "", fmt.Errorf("a plain value expected")
	}
	switch n.Kind {
	case yaml.SequenceNode:
		var parts []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return "", fmt.Errorf("a list of plain values expected")
			}
			parts = append(parts, c.Value)
		}
		return strings.Join(parts, ","), nil
	case yaml.MappingNode:
		var parts []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || v.Kind != yaml.ScalarNode {
				return "", fmt.Errorf("a mapping of plain values expected")
			}
			parts = append(parts, k.Value+"="+v.Value)
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("unexpected YAML value")
}

// unknownEnv returns the variables of environ (KEY=value) that start with
// DFAAS_ but set no flag of fs: a misspelt one (DFAAS_NEIGHBORS) would
// otherwise be ignored without a word.
func unknownEnv(fs *flag.FlagSet, environ []string) []string {
	known := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { known[envName(f.Name)] = true })
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, envPrefix) && !known[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
