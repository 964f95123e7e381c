package main

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// applySources fills in the member's flags that the command line left unset: from
// the environment (RAFTKV_NAME, or etcd's ETCD_NAME, for --name), then from the
// YAML file of --config-file (etcd's keys: name, data-dir, ...). A flag wins over
// the environment, the environment over the file, the file over the default.
//
// etcd's own rule differs (etcdmain/config.go and pkg/flags in etcd 3.7): with a
// config file, etcd ignores every other flag and environment variable; without one,
// a setting given both as a flag and as an ETCD_ variable makes it exit. raftkv
// layers the sources instead, so that one setting can be changed without rewriting
// the file, and returns a warning for every setting one source overrides in another:
// a configuration that worked with etcd starts the same, and one that etcd would
// have read differently says so in the log.
//
// It returns the warnings to log once the logger exists, and the first setting
// that cannot be applied as an error that names its source.
func applySources(fs *pflag.FlagSet, environ []string) (warnings []string, err error) {
	warnings, _, err = applySourcesFrom(fs, environ)
	return warnings, err
}

// applySourcesFrom is applySources that also returns where each flag set other than
// on the command line took its value: the environment variable, or "--config-file
// PATH".
func applySourcesFrom(fs *pflag.FlagSet, environ []string) (warnings []string, origin map[string]string, err error) {
	origin = map[string]string{}
	fs.Visit(func(f *pflag.Flag) { origin[f.Name] = "the command line" })

	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	used := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || !settable(f) {
			return
		}
		key, value, ok, conflict := envValue(env, f.Name, used)
		if conflict != nil {
			err = conflict
			return
		}
		if !ok {
			return
		}
		if f.Changed {
			warnings = append(warnings, fmt.Sprintf("--%s %q from the command line overrides %s=%q (etcd refuses to start when both are set)",
				f.Name, f.Value.String(), key, value))
			return
		}
		if serr := fs.Set(f.Name, value); serr != nil {
			err = fmt.Errorf("environment variable %s=%q is not a valid --%s (%s): %v", key, value, f.Name, f.Value.Type(), serr)
			return
		}
		origin[f.Name] = key
	})
	if err != nil {
		return nil, nil, err
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if (strings.HasPrefix(k, "RAFTKV_") || strings.HasPrefix(k, "ETCD_")) && !used[k] && env[k] != "" {
			warnings = append(warnings, fmt.Sprintf("unrecognized environment variable %s ignored: no flag of that name", k))
		}
	}

	if path := fs.Lookup("config-file").Value.String(); path != "" {
		fileWarnings, err := applyConfigFile(fs, path, origin)
		if err != nil {
			return nil, nil, err
		}
		warnings = append(warnings, fileWarnings...)
	}
	etcdWarnings, err := checkEtcdFlags(fs, origin)
	if err != nil {
		return nil, nil, err
	}
	for name, from := range origin {
		if from == "the command line" {
			delete(origin, name)
		}
	}
	return append(warnings, etcdWarnings...), origin, nil
}

// withOrigin adds to an error about the member's settings where each flag it names
// took its value, for those not given on the command line: "--listen-client-urls:
// ... (--listen-client-urls is from ETCD_LISTEN_CLIENT_URLS)".
func withOrigin(err error, origin map[string]string) error {
	msg := err.Error()
	var from []string
	for _, name := range slices.Sorted(maps.Keys(origin)) {
		if mentionsFlag(msg, name) && !strings.Contains(msg, origin[name]) {
			from = append(from, fmt.Sprintf("--%s is from %s", name, origin[name]))
		}
	}
	if len(from) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(from, "; "))
}

// mentionsFlag reports whether msg names --name as a whole flag, not as the start of
// a longer one (--name in --name-foo).
func mentionsFlag(msg, name string) bool {
	flag := "--" + name
	for rest := msg; ; {
		i := strings.Index(rest, flag)
		if i < 0 {
			return false
		}
		rest = rest[i+len(flag):]
		if rest == "" || !(rest[0] == '-' || rest[0] >= 'a' && rest[0] <= 'z') {
			return true
		}
	}
}

// settable reports whether a flag can come from the environment or a file: every
// member flag except the internal ones.
func settable(f *pflag.Flag) bool {
	return f.Name != "help" && f.Name != "version" && f.Name != supervisorFDFlag && !slices.Contains(clientBoolFlags, f.Name)
}

// envValue returns the environment's value for a flag: RAFTKV_<NAME> or etcd's
// ETCD_<NAME>, with dashes as underscores. Both set to different values is an
// error, since neither can be assumed to be the one meant.
func envValue(env map[string]string, flag string, used map[string]bool) (key, value string, ok bool, err error) {
	suffix := strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
	rKey, eKey := "RAFTKV_"+suffix, "ETCD_"+suffix
	rValue, rOK := env[rKey]
	eValue, eOK := env[eKey]
	rOK, eOK = rOK && rValue != "", eOK && eValue != "" // as etcd: an empty variable is unset
	used[rKey], used[eKey] = true, true
	switch {
	case rOK && eOK && rValue != eValue:
		return "", "", false, fmt.Errorf("%s=%q and %s=%q disagree; unset one of them", rKey, rValue, eKey, eValue)
	case rOK:
		return rKey, rValue, true, nil
	case eOK:
		return eKey, eValue, true, nil
	}
	return "", "", false, nil
}

// applyConfigFile sets each flag the command line and the environment left unset
// from etcd's YAML config file at path. The keys of the sections
// client-transport-security and peer-transport-security set the TLS flags they
// stand for (transportSecurityFlags).
func applyConfigFile(fs *pflag.FlagSet, path string, origin map[string]string) (warnings []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config-file: %v", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("--config-file %s is not YAML: %v", path, err)
	}
	for _, key := range slices.Sorted(maps.Keys(doc)) {
		raw := doc[key]
		if raw == nil {
			continue // "key:" with no value, as etcd's sample file has many
		}
		section, isSection := transportSecurityFlags[key]
		if !isSection {
			w, err := applyConfigKey(fs, path, key, key, raw, origin)
			if err != nil {
				return nil, err
			}
			warnings = append(warnings, w...)
			continue
		}
		fields, ok := raw.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("--config-file %s: %s is a %T; give a mapping of its keys (cert-file: ..., key-file: ...)", path, key, raw)
		}
		for _, field := range slices.Sorted(maps.Keys(fields)) {
			name := key + "." + field
			flag, known := section[field]
			switch {
			case fields[field] == nil:
				continue
			case !known:
				warnings = append(warnings, fmt.Sprintf("--config-file %s: unknown key %q ignored", path, name))
				continue
			}
			w, err := applyConfigKey(fs, path, name, flag, fields[field], origin)
			if err != nil {
				return nil, err
			}
			warnings = append(warnings, w...)
		}
	}
	return warnings, nil
}

// applyConfigKey sets flag from the config file's key, unless the command line or
// the environment already set it.
func applyConfigKey(fs *pflag.FlagSet, path, key, flag string, raw any, origin map[string]string) (warnings []string, err error) {
	f := fs.Lookup(flag)
	if f == nil || !settable(f) {
		return []string{fmt.Sprintf("--config-file %s: unknown key %q ignored", path, key)}, nil
	}
	value, err := yamlScalar(raw)
	if err != nil {
		return nil, fmt.Errorf("--config-file %s: %s: %v", path, key, err)
	}
	if n, isInt := raw.(int); isInt && f.Value.Type() == (durationValue{}).Type() {
		// etcd's YAML durations are whole nanoseconds (a time.Duration in JSON).
		value = time.Duration(n).String()
	}
	if f.Changed {
		return []string{fmt.Sprintf("--%s %q from %s overrides %s: %q in --config-file %s (etcd would ignore everything but the file)",
			flag, f.Value.String(), origin[flag], key, value, path)}, nil
	}
	if err := fs.Set(flag, value); err != nil {
		return nil, fmt.Errorf("--config-file %s: %s: %q is not a valid %s: %v", path, key, value, f.Value.Type(), err)
	}
	origin[flag] = "--config-file " + path
	return nil, nil
}

// yamlScalar renders a YAML value as the flag text it stands for: a list (etcd's
// log-outputs) joins with commas, as the flag takes it.
func yamlScalar(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int:
		return strconv.Itoa(v), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case []any:
		var parts []string
		for _, e := range v {
			s, err := yamlScalar(e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("a %T is not a flag value; give a string, number, boolean or list", v)
	}
}
