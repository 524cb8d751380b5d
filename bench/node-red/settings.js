// Node-RED settings for bench/actions.py --peer node-red: headless (no editor, no HTTP
// server), the flow read from the userDir the bench makes in a temp folder, quiet logs.
module.exports = {
    flowFile: "flows.json",
    // The flow holds no credentials; false keeps Node-RED from generating and storing a key.
    credentialSecret: false,
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    logging: {
        console: {
            level: process.env.BENCH_NODE_RED_LOG || "warn",
            metrics: false,
            audit: false,
        },
    },
    // No external modules are installed or fetched at start.
    externalModules: {
        autoInstall: false,
        palette: { allowInstall: false },
        modules: { allowInstall: false },
    },
    editorTheme: {
        projects: { enabled: false },
        tours: false,
    },
    functionExternalModules: false,
    functionGlobalContext: {},
    exportGlobalContextKeys: false,
    diagnostics: { enabled: false },
    telemetry: { enabled: false },
};
