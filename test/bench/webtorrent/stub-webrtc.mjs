// webrtc-polyfill stand-in for the WebTorrent baseline: TCP peers only, no WebRTC.
// (Its real package wants a native node-datachannel download that does not work here.)
const unavailable = () => { throw new Error('WebRTC is not available in the WebTorrent baseline (TCP peers only)') }
export class RTCPeerConnection { constructor () { unavailable() } }
export class RTCSessionDescription { constructor () { unavailable() } }
export class RTCIceCandidate { constructor () { unavailable() } }
export default { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate }
