// The seed's stack at rest: discord.js clients in one process, as the seed ran its bots,
// against the simulator. Tokens one a line in the file SEED_TOKEN_FILE; REST at SEED_API.
// Prints "ready" once every client has had every guild of its READY.
const fs = require('node:fs');
const { Client, GatewayIntentBits } = require('discord.js');

const tokens = fs.readFileSync(process.env.SEED_TOKEN_FILE, 'utf8').split('\n').filter(Boolean);
let waiting = tokens.length;
for (const token of tokens) {
  const client = new Client({
    intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildVoiceStates],
    rest: { api: process.env.SEED_API },
  });
  client.once('clientReady', () => {
    waiting -= 1;
    if (waiting === 0) console.log('ready');
  });
  client.login(token).catch((e) => {
    console.error(`login failed: ${e.message}`);
    process.exit(1);
  });
}
