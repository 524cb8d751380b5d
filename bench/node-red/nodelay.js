// Preloaded into Node-RED by `bench/actions.py --peer node-red-nodelay`: turns Nagle's
// algorithm off on every TCP socket it opens. Node-RED's MQTT client (mqtt.js) leaves it on, so
// a command published right after a PUBACK waits for the broker's delayed ACK (up to 40 ms).
const net = require("net");
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
    this.setNoDelay(true);
    return connect.apply(this, args);
};
