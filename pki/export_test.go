package pki

// KubeconfigFile is the struct ParseKubeconfig decoded every kubeconfig into before
// ScanKubeconfig, and still decodes what ScanKubeconfig leaves: the reference decodes into the
// same type so that even its error texts (which name the type) compare equal.
type KubeconfigFile = kubeconfigFile
