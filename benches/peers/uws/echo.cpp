// The uWebSockets peer (issue 15): the same two endpoints as the other peers, on one thread.
//
//   /echo               every message goes back to its sender
//   /broadcast/<room>   every message goes to every member of <room>, the sender included
//                       (uWS pub/sub: a member subscribes to the topic <room> on open, and a
//                       message is published to it with App::publish, which skips nobody)
//
// Anything else is answered with 404. Takes --listen HOST:PORT (default 127.0.0.1:9001).
// Settings are uWS's defaults except: no compression (as every peer), messages up to 16 MiB
// (corecast's limit), no idle timeout or automatic pings (the benchmark clients never ping and
// count every byte they receive), and 64 MiB of backpressure per member before uWS drops a
// message (its 64 KiB default drops broadcast messages to a member that reads a burst late,
// which the other peers never do).
//
// This file is ours; uWebSockets itself is never part of this repository. See
// benches/peers/README.md for what compare.sh expects of the built binary.

#include "App.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

namespace {

struct Echoer {};

struct Member {
    std::string room;
};

// The settings both endpoints share (see the top of this file).
template <typename UserData>
uWS::App::WebSocketBehavior<UserData> settings() {
    uWS::App::WebSocketBehavior<UserData> b;
    b.compression = uWS::DISABLED;
    b.maxPayloadLength = 16 * 1024 * 1024;
    b.idleTimeout = 0;
    b.maxBackpressure = 64 * 1024 * 1024;
    b.sendPingsAutomatically = false;
    return b;
}

[[noreturn]] void usage(const char *why) {
    std::fprintf(stderr, "uws-echo: %s\nusage: uws-echo [--listen HOST:PORT]\n", why);
    std::exit(2);
}

}  // namespace

int main(int argc, char **argv) {
    std::string host = "127.0.0.1";
    int port = 9001;
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            std::string addr = argv[++i];
            auto colon = addr.rfind(':');
            if (colon == std::string::npos) usage("--listen wants HOST:PORT");
            host = addr.substr(0, colon);
            port = std::atoi(addr.c_str() + colon + 1);
            if (port <= 0 || port > 65535) usage("bad port");
        } else {
            usage("unknown argument");
        }
    }

    uWS::App app;

    auto echo = settings<Echoer>();
    echo.message = [](auto *ws, std::string_view message, uWS::OpCode op) {
        ws->send(message, op, false);
    };
    app.ws<Echoer>("/echo", std::move(echo));

    auto room = settings<Member>();
    room.upgrade = [](auto *res, auto *req, auto *context) {
        res->template upgrade<Member>({.room = std::string(req->getParameter(0))},
                                      req->getHeader("sec-websocket-key"),
                                      req->getHeader("sec-websocket-protocol"),
                                      req->getHeader("sec-websocket-extensions"), context);
    };
    room.open = [](auto *ws) { ws->subscribe(ws->getUserData()->room); };
    room.message = [&app](auto *ws, std::string_view message, uWS::OpCode op) {
        app.publish(ws->getUserData()->room, message, op, false);
    };
    app.ws<Member>("/broadcast/:room", std::move(room));

    app.any("/*", [](auto *res, auto * /*req*/) {
        res->writeStatus("404 Not Found")->end("not found\n");
    });

    app.listen(host, port, [&](auto *listen_socket) {
        if (!listen_socket) {
            std::fprintf(stderr, "uws-echo: cannot listen on %s:%d\n", host.c_str(), port);
            std::exit(1);
        }
        std::fprintf(stderr, "uws-echo: listening on %s:%d\n", host.c_str(), port);
    });
    app.run();
    return 0;
}
