#include "eval/builtin_text.h"

namespace kvsqueeze::eval {

const std::string& builtin_text() {
  static const std::string text = R"(Once upon a time, in a small town by the sea, there lived a girl named Mia. Mia had a red hat and a little dog called Pip. Every morning, Mia and Pip walked to the beach to look for shells. Mia liked the round white shells best, and Pip liked to dig big holes in the sand.

One day, the sky was grey and the wind was strong. Mia's mom said, "Stay close to the house today. A storm is coming." Mia nodded, but she was sad. She wanted to find a new shell for her jar. She sat by the window and watched the waves jump high over the rocks.

After lunch, the rain stopped. The sun came out from behind a cloud. Mia asked, "Mom, can I go to the beach now?" Her mom looked at the sky and smiled. "Yes, but take Pip with you, and come back before dinner." Mia put on her red hat and ran out of the door. Pip ran after her, wagging his tail.

The beach looked different after the storm. There were long green weeds on the sand, and pieces of wood from old boats. Mia walked slowly and looked at everything. Pip sniffed a crab and jumped back when it moved. Mia laughed. "Be careful, Pip! Crabs do not like to be sniffed."

Near the big rock, Mia saw something shiny. She bent down and picked it up. It was a small glass bottle with a cork in the top. Inside the bottle, there was a rolled piece of paper. Mia's eyes grew wide. "Pip, look! It is a message in a bottle!" Pip barked and jumped up and down.

Mia pulled out the cork. It was hard, and she had to pull three times. At last, the cork came out with a pop. She took out the paper and opened it. The letters were blue and a little bit wet. The note said, "Hello, friend. My name is Sam. I live on an island far away. If you find this bottle, please write to me. I want to know where the sea took my bottle."

Mia held the note close to her heart. She had never had a friend from an island before. She ran home as fast as she could, with Pip running beside her. "Mom! Mom! I found a message from a boy named Sam!" Her mom read the note and smiled. "That is very special, Mia. Would you like to write back to him?"

That night, Mia sat at the kitchen table with a pencil and a big sheet of paper. She thought for a long time. Then she wrote, "Dear Sam, my name is Mia. I found your bottle on the beach near my house. I have a red hat and a dog called Pip. I collect shells. What do you like to do on your island?" She drew a picture of Pip and a picture of a shell at the bottom of the page.

The next morning, Mia and her mom went to the little post office in town. The man at the desk had a kind face and a grey beard. He looked at the address that Sam had written on the back of his note. "This island is very far away," he said. "Your letter will travel on a big ship. It may take many weeks." Mia gave him her letter and two shiny coins. "Thank you," she said. "I can wait."

Weeks went by. Mia went to the beach every day with Pip. She found a pink shell, a shell with stripes, and a tiny shell that looked like a star. She put them all in her jar. But every day she also asked her mom, "Did a letter come for me?" And every day her mom said, "Not yet, my dear. Be patient."

Summer turned into autumn. The leaves on the trees turned yellow and orange. The wind became cold, and Mia wore her warm coat over her dress. Pip liked to run through the piles of leaves and make them fly. One afternoon, when Mia came home from school, her mom was waiting at the door with a big smile. In her hand, she held a blue envelope.

"A letter came for you," her mom said. Mia dropped her bag and took the envelope with both hands. On the front, in big blue letters, it said "To Mia." She opened it very carefully, so she would not tear the paper. Inside, there was a letter and a small, flat shell. The shell was pale green, and it shone like the inside of a pearl.

The letter said, "Dear Mia, thank you for writing to me! I was so happy when your letter came. On my island, I like to fish with my grandpa and climb the tall palm trees. I also have a pet. She is a goat named Daisy, and she eats everything, even my socks! I am sending you a green shell. They only live near my island. Now you have a shell from the other side of the sea. Your friend, Sam."

Mia laughed so hard when she read about Daisy the goat. She put the green shell in the very middle of her jar, where everyone could see it. "This is the most special shell of all," she told Pip. Pip tilted his head and barked, as if he agreed.

From that day on, Mia and Sam wrote to each other every month. Mia told Sam about the snow in winter and about her new bike. Sam told Mia about the big turtles that came to his beach at night and about the day Daisy the goat ate his grandpa's hat. They sent each other drawings, and Sam sent a photo of the sunset over the sea.

One spring day, a very big letter came. Sam wrote, "Mia, I have great news. My grandpa and I are going to sail to your town in the summer! We want to meet you and Pip. Can you show us the beach where you found my bottle?" Mia jumped up and down and shouted so loudly that Pip started to bark too.

Mia counted the days until summer. She cleaned her room, she made a card that said "Welcome, Sam," and she taught Pip to sit and give his paw. Her mom baked a big apple pie. On the day the boat came, the whole town seemed to shine. Mia stood on the dock in her red hat and waved and waved.

A small white boat came into the harbor. A boy with brown hair and a big smile stood at the front, waving back. It was Sam! When the boat stopped, Sam jumped onto the dock and ran to Mia. "You are just like your letters," he said. Mia laughed. "And you are just like your drawings!"

That afternoon, Mia, Sam and Pip walked down to the beach. Mia showed Sam the big rock where she had found the bottle. The sea was calm and blue, and the sand was warm under their feet. Sam took something out of his pocket. It was a new glass bottle with a cork. "Let us write a message together," he said, "and send it out to sea. Maybe someone else will find a new friend, just like we did."

So they sat on the sand and wrote a note together. It said, "Hello, friend. We are Mia and Sam. We met because of a bottle like this one. If you find it, please write to us." They rolled up the paper, put it in the bottle and pushed the cork in tight. Then Sam threw the bottle as far as he could. It landed with a splash and floated away on the waves.

Mia and Sam watched the bottle until it was a tiny dot far out on the water. Pip sat between them and wagged his tail. The sun went down slowly, and the sky turned pink and gold. Mia smiled. She knew that somewhere, one day, someone would find the bottle, and a new friendship would begin. And that is how a lost bottle on a stormy day gave Mia the best friend she ever had.
)";
  return text;
}

}  // namespace kvsqueeze::eval
